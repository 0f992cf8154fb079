package run

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/pipeline/images"
)

// attackConfig is the demo TCAV config plus one attack.
func attackConfig(t *testing.T, attack string, overrides ...string) []string {
	t.Helper()
	return append([]string{"tcav.random.count=10", "tcav.concepts=[striped,dotted]", "attack=" + attack}, overrides...)
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
	t.Logf("striped→zebra: %.2f (p %.2g) → %.2f (p %.2g, %s); %s transfer %.2f → %.2f; PSNR %.1f dB, %.0f%% predictions changed",
		a.Before.Mean, a.Before.PValue, a.After.Mean, a.After.PValue, a.After.Direction,
		a.Transfer.Classifier, a.Transfer.Before.Mean, a.Transfer.After.Mean, a.PSNRMean, 100*a.ChangedPrediction)
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
	for _, f := range files {
		adv, err := images.Decode(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		orig, err := images.Decode(filepath.Join(demo, "data", "striped", strings.TrimSuffix(f.Name(), ".png")+".png"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range orig.Pix {
			if d := math.Abs(float64(adv.Pix[i] - orig.Pix[i])); d > 0.0157+1e-6 {
				t.Fatalf("%s: pixel %d differs by %g > eps", f.Name(), i, d)
			}
		}
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

// When preprocessing resizes and crops, the attack works on the cropped
// pixels and writes them; judging must read them back as they are. A budget
// spent on nothing (steps too small to move a pixel level) must then leave
// the score exactly where it was.
func TestNoOpAttackKeepsTheScoreWhenPreprocessingCrops(t *testing.T) {
	cfg := demoConfig(t, "", attackConfig(t,
		`[{concept: striped, target: zebra, layer: block3, eps: [0.0157], step: 0.00001, steps: 2, random_start: false}]`,
		"model.input.size=[56,56]", "model.input.resize=72")...)
	res, _ := mustRun(t, cfg, filepath.Join(t.TempDir(), "run"))
	a := res.Attack[0]
	if a.Linf != 0 {
		t.Fatalf("linf %g: the no-op attack moved pixels", a.Linf)
	}
	if a.After.Mean != a.Before.Mean || a.After.PValue != a.Before.PValue {
		t.Fatalf("unperturbed images judged %.3f (p %.3g) after vs %.3f (p %.3g) before",
			a.After.Mean, a.After.PValue, a.Before.Mean, a.Before.PValue)
	}
}
