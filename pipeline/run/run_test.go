package run

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/report"
)

// demoConfig writes a small TCAV config over the bundled demo model and data
// (or dataRoot) into a temporary directory and loads it with overrides.
func demoConfig(t *testing.T, dataRoot string, overrides ...string) *config.Config {
	t.Helper()
	yaml := testdemo.Config{Name: "test", Seed: 3, DataRoot: dataRoot, MaxImages: 20, BatchSize: 16}.YAML() + `tcav:
  targets: [zebra]
  concepts: [striped, random500_9]
  random: {prefix: random500_, count: 6}
  layers: [block3]
`
	return loadConfig(t, t.TempDir(), "c.yaml", yaml, overrides...)
}

// loadConfig writes yaml to dir/name and loads it with overrides.
func loadConfig(t *testing.T, dir, name, yaml string, overrides ...string) *config.Config {
	t.Helper()
	cfg, err := config.Load(testdemo.WriteFile(t, dir, name, yaml), overrides)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func mustRun(t *testing.T, cfg *config.Config, out string) (*report.Results, Manifest) {
	t.Helper()
	dir, err := Run(cfg, Options{Out: out, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := report.ReadJSON(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return res, m
}

func entry(t *testing.T, res *report.Results, concept string) report.TCAVEntry {
	t.Helper()
	for _, e := range res.TCAV {
		if e.Concept == concept {
			return e
		}
	}
	t.Fatalf("no TCAV entry for %s", concept)
	return report.TCAVEntry{}
}

// The demo model was trained so that zebra is the striped class: striped is
// important for zebra, and a set of random images used as a concept is not,
// under the calibrated test (39 random sets from the pool: enough for alpha
// 0.05 over two concepts) and under the reference two-sample t-test.
func TestDemoStripedMattersForZebraAndARandomConceptDoesNot(t *testing.T) {
	for _, tt := range []struct {
		test      string
		overrides []string
		r         int
	}{
		{"calibrated", []string{"tcav.random.from=random_pool", "tcav.random.count=39"}, 39},
		{"two-sample", []string{"tcav.significance.test=two-sample"}, 6},
	} {
		t.Run(tt.test, func(t *testing.T) {
			res, _ := mustRun(t, demoConfig(t, "", tt.overrides...), filepath.Join(t.TempDir(), "run"))
			striped := entry(t, res, "striped")
			if !striped.Significant || striped.Direction != "above" || striped.Mean < 0.8 {
				t.Errorf("striped→zebra: mean %.2f, p %.2g, significant %v, %s; want high and significant above",
					striped.Mean, striped.PValue, striped.Significant, striped.Direction)
			}
			random := entry(t, res, "random500_9")
			if random.Significant {
				t.Errorf("random concept→zebra significant: mean %.2f, p %.2g", random.Mean, random.PValue)
			}
			if len(striped.Scores) != tt.r || len(striped.RandomScores) != tt.r || len(striped.CAVAccuracy) != tt.r {
				t.Errorf("want %d scores, random scores and accuracies, got %d, %d, %d", tt.r,
					len(striped.Scores), len(striped.RandomScores), len(striped.CAVAccuracy))
			}
			if string(striped.Test) != tt.test || striped.RandomSetCount != tt.r || striped.Threshold != 0.025 {
				t.Errorf("entry says test %q with %d random sets at %g; want %s, %d, 0.025",
					striped.Test, striped.RandomSetCount, striped.Threshold, tt.test, tt.r)
			}
			if tt.test == "calibrated" && (striped.Null == nil || len(striped.Null.Means) != tt.r || striped.Null.Negatives != 20) {
				t.Errorf("calibrated entry without its null distribution: %+v", striped.Null)
			}
		})
	}
}

// Six random sets cannot reach alpha 0.05/2 with a rank test (the smallest
// p is 1/7): the calibrated test must say so and call nothing significant,
// not even striped, and say how many random sets it needs.
func TestCalibratedTestWithTooFewRandomSetsSaysSoAndClaimsNothing(t *testing.T) {
	res, _ := mustRun(t, demoConfig(t, ""), filepath.Join(t.TempDir(), "run"))
	for _, e := range res.TCAV {
		if e.Significant || e.Resolution != "cannot reach alpha with 6 random sets" || e.RandomSetsNeeded != 39 {
			t.Errorf("%s: significant %v, resolution %q, needs %d; want false, the resolution, 39",
				e.Concept, e.Significant, e.Resolution, e.RandomSetsNeeded)
		}
	}
	var out bytes.Buffer
	if err := Validate(demoConfig(t, ""), quietLog(), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cannot reach alpha with 6 random sets") || !strings.Contains(out.String(), "needs 39 random sets") {
		t.Errorf("validate does not say the test is out of reach:\n%s", out.String())
	}
}

// tcav.random.from draws disjoint sets, the same ones for the same seed,
// and refuses a pool too small for them.
func TestRandomFromDrawsDisjointSeededSets(t *testing.T) {
	draw := func(overrides ...string) map[string][]string {
		cfg := demoConfig(t, "", append([]string{"tcav.random.from=random_pool", "tcav.random.count=5"}, overrides...)...)
		e := loadedExperiment(t, cfg)
		if err := e.plan.ListImages(); err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, n := range cfg.TCAV.Random.Sets {
			out[n] = e.plan.Sets[n].Files
		}
		return out
	}
	a, b, c := draw(), draw(), draw("seed=4")
	seen := map[string]string{}
	for name, files := range a {
		if len(files) != 20 {
			t.Errorf("%s: %d images, want max_images = 20", name, len(files))
		}
		for _, f := range files {
			if other, dup := seen[f]; dup {
				t.Errorf("%s is in %s and %s", f, other, name)
			}
			seen[f] = name
		}
		if !slices.Equal(files, b[name]) {
			t.Errorf("%s: another draw with the same seed differs", name)
		}
		if slices.Equal(files, c[name]) {
			t.Errorf("%s: seed 4 draws the same images as seed 3", name)
		}
	}
	e := loadedExperiment(t, demoConfig(t, "", "tcav.random.from=random_pool", "tcav.random.count=101"))
	if err := e.plan.ListImages(); err == nil || !strings.Contains(err.Error(), "too few for 101 disjoint sets of 20") {
		t.Errorf("pool too small: %v", err)
	}
}

// Same seed: a run, a recomputed run (--force) and a run from the warm
// cache give byte-identical results.json; the last reads every activation,
// gradient and CAV from the cache.
func TestSameSeedSameBytesAndSecondRunHitsTheCache(t *testing.T) {
	cfg := demoConfig(t, "")
	root := t.TempDir()
	_, m1 := mustRun(t, cfg, filepath.Join(root, "a"))
	if _, err := Run(cfg, Options{Out: filepath.Join(root, "forced"), Force: true, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	_, m2 := mustRun(t, cfg, filepath.Join(root, "b"))
	a, _ := os.ReadFile(filepath.Join(root, "a", "results.json"))
	f, _ := os.ReadFile(filepath.Join(root, "forced", "results.json"))
	b, _ := os.ReadFile(filepath.Join(root, "b", "results.json"))
	if !bytes.Equal(a, f) || !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatal("results.json differs between runs with the same seed")
	}
	// 2 concepts + 6 random sets of activations, 1 gradient set, (2+1)×6
	// CAVs and the 9 random pairs of the calibrated design (all 15 pairs of
	// 6 sets) that the baseline does not already hold.
	want := 8 + 1 + 18 + 9
	if m1.CacheHits != 0 || m2.CacheHits != want {
		t.Fatalf("cache hits: first run %d, second %d; want 0 and %d", m1.CacheHits, m2.CacheHits, want)
	}
	// A different seed chooses other CAV splits: the results change.
	_, _ = mustRun(t, demoConfig(t, "", "seed=4"), filepath.Join(root, "c"))
	c, _ := os.ReadFile(filepath.Join(root, "c", "results.json"))
	if bytes.Equal(a, c) {
		t.Fatal("seed has no effect on the results")
	}
}

func TestRunDirectoryHasEveryOutput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	mustRun(t, demoConfig(t, ""), out)
	for _, f := range []string{"config.yaml", "manifest.json", "log.jsonl", "results.json", "tcav.csv", "report.html", "plots/tcav-zebra-block3.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty", f)
		}
	}
	// The resolved config reloads to the same experiment.
	again, err := config.Load(filepath.Join(out, "config.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.TCAV.Random.Count != 6 || again.Seed != 3 {
		t.Errorf("resolved config lost settings: %+v", again.TCAV.Random)
	}
}

// copyData makes a private copy of a few demo sets to damage.
func copyData(t *testing.T, sets ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, s := range sets {
		src := testdemo.Path("data", s)
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, s), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, s, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

var allSets = []string{"zebra", "striped", "random500_0", "random500_1", "random500_2", "random500_3", "random500_4", "random500_5", "random500_9"}

// Every bad input is one line that names the culprit, and leaves no run
// directory behind.
func TestBadInputsFailWithOneLineAndNoOutput(t *testing.T) {
	corrupt := copyData(t, allSets...)
	bad := filepath.Join(corrupt, "striped", "000_corrupt.png")
	if err := os.WriteFile(bad, []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := copyData(t, allSets...)
	entries, _ := os.ReadDir(filepath.Join(empty, "striped"))
	for _, e := range entries {
		os.Remove(filepath.Join(empty, "striped", e.Name()))
	}
	notModel := filepath.Join(t.TempDir(), "model.pt")
	os.WriteFile(notModel, []byte("hello"), 0o644)
	cases := []struct {
		name      string
		root      string
		overrides []string
		want      string
	}{
		{"corrupt image", corrupt, nil, "000_corrupt.png"},
		{"empty folder", empty, nil, "no images"},
		{"missing folder", "", []string{"tcav.concepts=[nosuchset]"}, "nosuchset"},
		{"bad layer", "", []string{"tcav.layers=[block4]"}, `"block4"`},
		{"target not in labels", "", []string{"tcav.targets=[horse]"}, `"horse" is not in the labels file`},
		{"class index out of range", "", []string{"tcav.targets=[7]"}, "out of range"},
		{"not a model", "", []string{"model.path=" + notModel}, "not a TorchScript model"},
		{"input size the model rejects", "", []string{"model.input.size=[2,2]"}, "rejects input"},
		{"no CUDA", "", []string{"device=cuda"}, "CUDA is not available"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "no CUDA" && torch.CUDAAvailable() {
				t.Skip("this machine has CUDA")
			}
			cfg := demoConfig(t, tc.root, tc.overrides...)
			parent := t.TempDir()
			out := filepath.Join(parent, "run")
			_, err := Run(cfg, Options{Out: out, Log: quietLog()})
			if err == nil {
				t.Fatal("run succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line containing %q", err, tc.want)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Fatalf("failed run left %v behind", left)
			}
		})
	}
	// skip_bad_images: the corrupt file is skipped with a warning.
	cfg := demoConfig(t, corrupt, "data.skip_bad_images=true")
	if _, err := Run(cfg, Options{Out: filepath.Join(t.TempDir(), "run"), Log: quietLog()}); err != nil {
		t.Fatalf("skip_bad_images: %v", err)
	}
}
