package run

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
)

// writeSet writes n 16×16 PNGs whose channels are drawn by pick.
func writeSet(t *testing.T, root, name string, n int, seed uint64, pick func(r *rand.Rand, c int) float32) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 11))
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		img := images.Image{C: 3, H: 16, W: 16, Pix: make([]float32, 3*16*16)}
		for c := 0; c < 3; c++ {
			for j := 0; j < 256; j++ {
				img.Pix[c*256+j] = pick(r, c)
			}
		}
		if err := images.WritePNG8(filepath.Join(dir, fmt.Sprintf("%03d.png", i)), img); err != nil {
			t.Fatal(err)
		}
	}
}

// testdata/models/planted.pt: feat copies the red channel to feature 0 and
// the blue one to feature 1; logit 0 = 2·mean(red) + 0.5 and logit 1 =
// 3·mean(blue) − 0.5. So ∇_feat h_0 is +2/256 on feature 0 and 0 elsewhere,
// for every image: a reddish concept's CAV has a positive red part and
// TCAV(reddish → 0) is exactly 1 against every random set; likewise
// TCAV(bluish → 1). A bluish concept says nothing about class 0: its CAV's
// red part is noise, so its scores look like random-vs-random ones.
//
// The calibrated test gets 40 random sets (alpha 0.05 over two concepts
// needs 39); the reference two-sample test its 8.
func TestPlantedModelKnownAnswers(t *testing.T) {
	for _, tt := range []struct {
		test string
		r    int
	}{{"calibrated", 40}, {"two-sample", 8}} {
		t.Run(tt.test, func(t *testing.T) { plantedKnownAnswers(t, tt.test, tt.r) })
	}
}

// plantedConfig writes the planted model's sets (a uniform class set, the
// reddish and bluish concepts, randoms uniform random sets) and a config.
func plantedConfig(t *testing.T, randoms int, overrides ...string) *config.Config {
	t.Helper()
	root := t.TempDir()
	uniform := func(r *rand.Rand, c int) float32 { return r.Float32() }
	tinted := func(channel int) func(r *rand.Rand, c int) float32 {
		return func(r *rand.Rand, c int) float32 {
			if c == channel {
				return 0.6 + 0.4*r.Float32()
			}
			return r.Float32()
		}
	}
	writeSet(t, root, "cls", 12, 1, uniform)
	writeSet(t, root, "reddish", 16, 2, tinted(0))
	writeSet(t, root, "bluish", 16, 3, tinted(2))
	for i := 0; i < randoms; i++ {
		writeSet(t, root, fmt.Sprintf("random500_%d", i), 16, uint64(10+i), uniform)
	}
	dir := t.TempDir()
	yaml := `name: planted
device: cpu
cache_dir: ` + filepath.Join(dir, "cache") + `
model:
  path: ` + filepath.Join(modelsDir(), "planted.pt") + `
  input: {size: [16, 16], mean: [0, 0, 0], std: [1, 1, 1]}
data: {root: ` + root + `, max_images: 16, batch_size: 8}
tcav:
  targets: ["0", "1"]
  class_sets: {"0": cls, "1": cls}
  concepts: [reddish, bluish]
  random: {prefix: random500_, count: ` + fmt.Sprint(randoms) + `}
  layers: [feat]
`
	return loadConfig(t, dir, "planted.yaml", yaml, overrides...)
}

func plantedKnownAnswers(t *testing.T, test string, randoms int) {
	cfg := plantedConfig(t, randoms, "tcav.significance.test="+test)
	res, _ := mustRun(t, cfg, filepath.Join(t.TempDir(), "run"))
	// 2 concepts × 2 targets × 1 layer, each scored against every random set.
	if len(res.TCAV) != 4 {
		t.Fatalf("%d TCAV entries, want 4 (2 concepts × 2 targets)", len(res.TCAV))
	}
	seen := map[string]bool{}
	for _, e := range res.TCAV {
		seen[e.Concept+"→"+e.Target] = true
		if len(e.Scores) != randoms || len(e.Magnitudes) != randoms || len(e.CAVAccuracy) != randoms || len(e.RandomSets) != randoms {
			t.Errorf("%s → %s: %d scores, %d magnitudes, %d accuracies, %d random sets; want %d each",
				e.Concept, e.Target, len(e.Scores), len(e.Magnitudes), len(e.CAVAccuracy), len(e.RandomSets), randoms)
		}
		// Both tints shift one channel's mean by 0.3 over 256 pixels: the
		// CAVs separate the sets on held-out rows (16 images a set, so a
		// few fits land on an unlucky split; none is worse than chance).
		meanAcc := 0.0
		for i, a := range e.CAVAccuracy {
			meanAcc += a / float64(len(e.CAVAccuracy))
			if a < 0.5 {
				t.Errorf("%s vs %s: CAV held-out accuracy %g, below chance", e.Concept, e.RandomSets[i], a)
			}
		}
		if meanAcc < 0.85 {
			t.Errorf("%s → %s: mean CAV held-out accuracy %.3f, want ≥ 0.85 for a planted tint", e.Concept, e.Target, meanAcc)
		}
		// By hand: ∇_feat h is 2/256 (class 0) or 3/256 (class 1) on the 256
		// positions of one feature and 0 elsewhere, so |S| = |∇h·v| ≤ ‖∇h‖ =
		// 2/16 or 3/16 for a unit CAV v; a related concept's CAV has a
		// positive part along that feature, so its S > 0 against every set.
		bound := map[string]float64{"0": 2.0 / 16, "1": 3.0 / 16}[e.Target]
		related := (e.Concept == "reddish") == (e.Target == "0")
		for i, m := range e.Magnitudes {
			if math.Abs(m) > bound+1e-6 || (related && !(m > 0)) {
				t.Errorf("%s → %s vs %s: magnitude %g, want in %s", e.Concept, e.Target, e.RandomSets[i], m,
					map[bool]string{true: fmt.Sprintf("(0, %g]", bound), false: fmt.Sprintf("[-%g, %g]", bound, bound)}[related])
			}
		}
		t.Logf("%s → %s: mean %.2f, p %.2g, %s, significant %v; magnitudes %.4f…", e.Concept, e.Target, e.Mean, e.PValue, e.Direction, e.Significant, e.Magnitudes[:min(3, len(e.Magnitudes))])
		if string(e.Test) != test || e.Resolution != "" {
			t.Errorf("%s → %s decided by %q (resolution %q), want %s", e.Concept, e.Target, e.Test, e.Resolution, test)
		}
		related = (e.Concept == "reddish") == (e.Target == "0")
		if related {
			for i, s := range e.Scores {
				if s != 1 {
					t.Errorf("%s → %s: score %g against %s, want exactly 1", e.Concept, e.Target, s, e.RandomSets[i])
				}
			}
			if !e.Significant || e.Direction != "above" {
				t.Errorf("%s → %s not significant above", e.Concept, e.Target)
			}
		} else if e.Significant && e.Direction == "above" {
			t.Errorf("%s → %s called important", e.Concept, e.Target)
		}
	}
	for _, k := range []string{"reddish→0", "reddish→1", "bluish→0", "bluish→1"} {
		if !seen[k] {
			t.Errorf("no entry for %s", k)
		}
	}
}

func modelsDir() string {
	p, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "models"))
	return p
}
