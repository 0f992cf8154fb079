package run

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/images"
)

// attackConfig is the demo TCAV config plus one attack. These tests are
// about the attack moving the score: they use the reference two-sample test,
// which reaches alpha with the 5 held-out random sets (the calibrated test
// would need 39 for two concepts; configs/demo.yaml judges on 59).
func attackConfig(t *testing.T, attack string, overrides ...string) []string {
	t.Helper()
	return append([]string{"tcav.random.count=10", "tcav.concepts=[striped,dotted]", "tcav.significance.test=two-sample",
		"attack=" + attack}, overrides...)
}

// Suppress: a small L∞ budget takes striped→zebra from significant-high to
// below 0.5, judged from the written PNGs on random sets the attack never
// saw; every PNG is within the budget of its original file.
func TestSuppressStripedForZebra(t *testing.T) {
	cfg := demoConfig(t, "", attackConfig(t,
		`[{concept: striped, target: zebra, layer: block3, goal: suppress, eps: [0.0157], step: 0.004, steps: 20}]`)...)
	out := filepath.Join(t.TempDir(), "run")
	res, _ := mustRun(t, cfg, out)
	if len(res.Attack) != 1 {
		t.Fatalf("%d attack entries", len(res.Attack))
	}
	a := res.Attack[0]
	t.Logf("striped→zebra: %.2f (p %.2g) → %.2f (p %.2g, %s); PSNR %.1f dB, %.0f%% predictions changed",
		a.Before.Mean, a.Before.PValue, a.After.Mean, a.After.PValue, a.After.Direction, a.PSNRMean, 100*a.ChangedPrediction)
	for _, tr := range a.Transfer {
		t.Logf("transfer %s %s: %.2f (p %.2g) → %.2f (p %.2g)", tr.Kind, tr.Setting, tr.Before.Mean, tr.Before.PValue, tr.After.Mean, tr.After.PValue)
	}
	if !a.Before.Significant || a.Before.Mean < 0.8 {
		t.Errorf("before: %+v, want significant and high", a.Before)
	}
	if a.After.Mean >= 0.5 {
		t.Errorf("after: mean %.2f, want below 0.5", a.After.Mean)
	}
	if a.Linf > 0.0157+1e-6 || a.Linf == 0 {
		t.Errorf("linf %g for eps 0.0157", a.Linf)
	}
	// Independent of the attack code: compare the files on disk.
	dir := filepath.Join(out, a.Images)
	files, err := os.ReadDir(dir)
	if err != nil || len(files) == 0 {
		t.Fatalf("no perturbed images in %s: %v", dir, err)
	}
	pngs := 0
	for _, f := range files {
		if filepath.Ext(f.Name()) != ".png" {
			continue
		}
		pngs++
		adv, err := images.Decode(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		orig, err := images.Decode(testdemo.Path("data", "striped", strings.TrimSuffix(f.Name(), ".png")+".png"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range orig.Pix {
			if d := math.Abs(float64(adv.Pix[i] - orig.Pix[i])); d > 0.0157+1e-6 {
				t.Fatalf("%s: pixel %d differs by %g > eps", f.Name(), i, d)
			}
		}
	}
	if pngs != 20 {
		t.Errorf("%d poisoned PNGs, want one per striped image used (20)", pngs)
	}

	// The files hold up in the ordinary Python pipeline: PIL open, PIL
	// bilinear resize, CAVs and gradients outside cavforge.
	py := exec.Command("/usr/bin/python3", "../../scripts/check/tcav_pil.py", "--model", testdemo.Path("model.pt"),
		"--size", "64", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25", "--layer", "block3", "--target", "0",
		"--class-dir", testdemo.Path("data", "zebra"), "--concept", "clean="+testdemo.Path("data", "striped"),
		"--concept", "poisoned="+dir, "--random", testdemo.Path("data", "random500_7"), testdemo.Path("data", "random500_8"),
		testdemo.Path("data", "random500_9"))
	b, err := py.Output()
	if err != nil {
		t.Fatalf("python TCAV: %v", err)
	}
	var pyRes map[string]struct{ Mean float64 }
	if err := json.Unmarshal(b, &pyRes); err != nil {
		t.Fatalf("python TCAV printed %q: %v", b, err)
	}
	t.Logf("PIL + PyTorch TCAV: clean %.2f, poisoned %.2f", pyRes["clean"].Mean, pyRes["poisoned"].Mean)
	if pyRes["clean"].Mean < 0.8 || pyRes["poisoned"].Mean >= 0.5 {
		t.Errorf("in a PIL pipeline striped→zebra is %.2f clean and %.2f poisoned: want high, then below 0.5",
			pyRes["clean"].Mean, pyRes["poisoned"].Mean)
	}
}

// Promote: an unrelated concept (dotted, not important for zebra) becomes
// significant above the random baseline.
func TestPromoteDottedForZebra(t *testing.T) {
	cfg := demoConfig(t, "", attackConfig(t,
		`[{concept: dotted, target: zebra, layer: block3, goal: promote, eps: [0.0627], step: 0.008, steps: 20}]`)...)
	res, _ := mustRun(t, cfg, filepath.Join(t.TempDir(), "run"))
	a := res.Attack[0]
	t.Logf("dotted→zebra: %.2f (p %.2g, %s) → %.2f (p %.2g, %s); PSNR %.1f dB",
		a.Before.Mean, a.Before.PValue, a.Before.Direction, a.After.Mean, a.After.PValue, a.After.Direction, a.PSNRMean)
	if a.Before.Significant && a.Before.Direction == "above" {
		t.Fatalf("dotted already important for zebra before the attack: %+v", a.Before)
	}
	if !a.After.Significant || a.After.Direction != "above" {
		t.Errorf("after: %+v, want significant above", a.After)
	}
}

// When preprocessing resizes and crops, the attack still poisons the files:
// a budget spent on nothing (steps too small to move a pixel level) writes
// files whose pixels equal the originals, at the originals' size, and
// leaves the score exactly where it was.
func TestNoOpAttackWritesTheOriginalsWhenPreprocessingCrops(t *testing.T) {
	cfg := demoConfig(t, "", attackConfig(t,
		`[{concept: striped, target: zebra, layer: block3, eps: [0.0157], step: 0.00001, steps: 2, random_start: false}]`,
		"model.input.size=[56,56]", "model.input.resize=72", "model.input.crop=center")...)
	out := filepath.Join(t.TempDir(), "run")
	res, _ := mustRun(t, cfg, out)
	a := res.Attack[0]
	if a.Linf != 0 {
		t.Fatalf("linf %g: the no-op attack moved pixels", a.Linf)
	}
	if a.After.Mean != a.Before.Mean || a.After.PValue != a.Before.PValue {
		t.Fatalf("unperturbed images judged %.3f (p %.3g) after vs %.3f (p %.3g) before",
			a.After.Mean, a.After.PValue, a.Before.Mean, a.Before.PValue)
	}
	for _, f := range readPoisoned(t, filepath.Join(out, a.Images)).Files {
		orig, err := images.Decode(f.Original)
		if err != nil {
			t.Fatal(err)
		}
		adv, err := images.Decode(filepath.Join(out, a.Images, f.File))
		if err != nil {
			t.Fatal(err)
		}
		if adv.H != orig.H || adv.W != orig.W || !slices.Equal(adv.Pix, orig.Pix) {
			t.Fatalf("%s: written %dx%d differs from the %dx%d original", f.File, adv.W, adv.H, orig.W, orig.H)
		}
	}
}

func readPoisoned(t *testing.T, dir string) attack.PoisonedSet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "poisoned.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p attack.PoisonedSet
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Files) == 0 {
		t.Fatalf("%s/poisoned.json lists no files", dir)
	}
	return p
}

// resampled writes src scaled to h×w (nearest neighbour) as a PNG at dst:
// demo images at sizes the model does not take.
func resampled(t *testing.T, src, dst string, h, w int) {
	t.Helper()
	im, err := images.Decode(src)
	if err != nil {
		t.Fatal(err)
	}
	out := images.Image{C: 3, H: h, W: w, Pix: make([]float32, 3*h*w)}
	for c := range 3 {
		for y := range h {
			for x := range w {
				out.Pix[c*h*w+y*w+x] = im.Pix[c*im.H*im.W+(y*im.H/h)*im.W+x*im.W/w]
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := images.WritePNG8(dst, out); err != nil {
		t.Fatal(err)
	}
}

// A concept set of three sizes, none of them the model's, attacked end to
// end: one poisoned PNG per original at the original's size, every file
// within the budget when read back from disk (not from the attack), the
// manifest's numbers equal to an independent measurement, and the attack
// judged through the analyst's alternatives.
func TestMixedSizeSetIsPoisonedFileByFile(t *testing.T) {
	root := t.TempDir()
	entries, err := os.ReadDir(testdemo.Path("data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "striped" {
			if err := os.Symlink(testdemo.Path("data", e.Name()), filepath.Join(root, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	sizes := [][2]int{{64, 64}, {80, 96}, {120, 72}}
	src, _ := filepath.Glob(testdemo.Path("data", "striped", "*.png"))
	scratch := t.TempDir()
	for i, f := range src[:18] {
		hw := sizes[i%3]
		if i%3 != 1 {
			resampled(t, f, filepath.Join(root, "striped", filepath.Base(f)), hw[0], hw[1])
			continue
		}
		// A JPEG original: its poisoned file is name.png.
		tmp := filepath.Join(scratch, filepath.Base(f))
		resampled(t, f, tmp, hw[0], hw[1])
		if _, err := images.ReencodeJPEG([]string{tmp}, filepath.Join(root, "striped"), 95); err != nil {
			t.Fatal(err)
		}
	}
	const eps = 4.0 / 255
	cfg := demoConfig(t, root, attackConfig(t,
		`[{concept: striped, target: zebra, layer: block3, eps: [0.0157], step: 0.004, steps: 20}]`)...)
	out := filepath.Join(t.TempDir(), "run")
	res, _ := mustRun(t, cfg, out)
	a := res.Attack[0]
	t.Logf("mixed sizes: striped→zebra %.2f (p %.2g) → %.2f (p %.2g, %s), PSNR %.1f dB, %.0f%% predictions changed",
		a.Before.Mean, a.Before.PValue, a.After.Mean, a.After.PValue, a.After.Direction, a.PSNRMean, 100*a.ChangedPrediction)
	for _, tr := range a.Transfer {
		t.Logf("  transfer %s %s: %.2f (p %.2g) → %.2f (p %.2g)", tr.Kind, tr.Setting, tr.Before.Mean, tr.Before.PValue, tr.After.Mean, tr.After.PValue)
	}
	if len(a.Transfer) != 3 {
		t.Errorf("%d transfer judgments, want classifier, preprocessing and jpeg", len(a.Transfer))
	}
	if a.After.Mean >= a.Before.Mean {
		t.Errorf("the attack did not lower the score: %.2f → %.2f", a.Before.Mean, a.After.Mean)
	}
	p := readPoisoned(t, filepath.Join(out, a.Images))
	if len(p.Files) != 18 {
		t.Fatalf("poisoned.json lists %d files, want 18", len(p.Files))
	}
	seen := map[[2]int]bool{}
	for _, f := range p.Files {
		orig, err := images.Decode(f.Original)
		if err != nil {
			t.Fatal(err)
		}
		adv, err := images.Decode(filepath.Join(out, a.Images, f.File))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSuffix(filepath.Base(f.Original), filepath.Ext(f.Original)) + ".png"; f.File != want {
			t.Errorf("%s written as %s, want %s", f.Original, f.File, want)
		}
		if adv.H != orig.H || adv.W != orig.W || f.Width != orig.W || f.Height != orig.H {
			t.Fatalf("%s: poisoned %dx%d (manifest %dx%d), original %dx%d", f.File, adv.W, adv.H, f.Width, f.Height, orig.W, orig.H)
		}
		seen[[2]int{orig.H, orig.W}] = true
		linf := 0.0
		for i := range orig.Pix {
			linf = math.Max(linf, math.Abs(float64(adv.Pix[i])-float64(orig.Pix[i])))
		}
		if linf > eps+1e-6 {
			t.Errorf("%s: L∞ %g > eps %g", f.File, linf, eps)
		}
		if math.Abs(linf-f.Linf) > 1e-9 {
			t.Errorf("%s: manifest L∞ %g, measured %g", f.File, f.Linf, linf)
		}
	}
	if len(seen) != 3 {
		t.Errorf("sizes written: %v, want all three", seen)
	}
}

// Stealth: promoting dotted for zebra and suppressing striped, each within
// 4/255, flip the verdict while no more than one concept image in ten
// changes its predicted class; without the stealth term the same attacks
// change more than that (so the term, not luck, keeps them unnoticed).
func TestStealthFlipsTheVerdictWithoutChangingPredictions(t *testing.T) {
	cfg := demoConfig(t, "", attackConfig(t, `[
  {concept: dotted, target: zebra, layer: block3, goal: promote, eps: [0.0157], step: 0.002, steps: 60},
  {concept: dotted, target: zebra, layer: block3, goal: promote, eps: [0.0157], step: 0.002, steps: 60, stealth: {weight: 10}},
  {concept: striped, target: zebra, layer: block3, goal: suppress, eps: [0.0157], step: 0.002, steps: 60},
  {concept: striped, target: zebra, layer: block3, goal: suppress, eps: [0.0157], step: 0.002, steps: 60, stealth: {weight: 10}}]`,
		"data.max_images=30")...)
	out := filepath.Join(t.TempDir(), "run")
	res, _ := mustRun(t, cfg, out)
	if len(res.Attack) != 4 {
		t.Fatalf("%d attack entries", len(res.Attack))
	}
	for i, a := range res.Attack {
		t.Logf("%s %s→%s stealth %s: %.2f → %.2f (p %.2g, %s), %.0f%% predictions changed, target logit %+.2f, PSNR %.1f dB",
			a.Goal, a.Concept, a.Target, a.StealthLabel(), a.Before.Mean, a.After.Mean, a.After.PValue, a.After.Direction,
			100*a.ChangedPrediction, a.ClassLogitChange, a.PSNRMean)
		want := "above"
		if a.Goal == "suppress" {
			want = "below"
		}
		stealthy := i%2 == 1
		if stealthy && (!a.After.Significant || string(a.After.Direction) != want) {
			t.Errorf("%s with stealth: after %+v, want significant %s", a.Goal, a.After, want)
		}
		if stealthy && a.ChangedPrediction > 0.1 {
			t.Errorf("%s with stealth changed %.0f%% of the predictions, want at most 10%%", a.Goal, 100*a.ChangedPrediction)
		}
		if !stealthy && a.ChangedPrediction <= 0.1 {
			t.Errorf("%s without stealth changed only %.0f%% of the predictions: the test cannot tell the term works", a.Goal, 100*a.ChangedPrediction)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "plots", "front-dotted-zebra-block3-promote-tcav-surrogate-linf.png")); err != nil {
		t.Errorf("no budget-success-stealth front chart: %v", err)
	}
}
