package run

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/cavforge/cavforge/internal/testdemo"
)

// Every classifier and every significance test the config offers, in a full
// run of the demo, reaches the demo's answer: striped is important for
// zebra, a random set used as a concept is not.
func TestEveryClassifierAndTestFindsStripedForZebraInAFullRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
	}{
		{"logistic", []string{"tcav.cav.classifier=logistic", "tcav.significance.test=two-sample"}},
		{"mean-diff", []string{"tcav.cav.classifier=mean-diff", "tcav.significance.test=two-sample"}},
		{"one-sample", []string{"tcav.significance.test=one-sample"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := mustRun(t, demoConfig(t, "", tc.set...), filepath.Join(t.TempDir(), "run"))
			striped, random := entry(t, res, "striped"), entry(t, res, "random500_9")
			if !striped.Significant || striped.Direction != "above" || striped.Mean < 0.8 {
				t.Errorf("striped→zebra: mean %.2f, p %.2g, significant %v %s; want high and significant above",
					striped.Mean, striped.PValue, striped.Significant, striped.Direction)
			}
			if random.Significant && random.Direction == "above" {
				t.Errorf("random concept→zebra called important: mean %.2f, p %.2g", random.Mean, random.PValue)
			}
			wantTest := "two-sample"
			if tc.name == "one-sample" {
				wantTest = "one-sample"
			}
			if string(striped.Test) != wantTest {
				t.Errorf("entry decided by %q, want %s", striped.Test, wantTest)
			}
			// 7 held-out images a class: each CAV better than chance, the
			// mean well above it.
			mean := 0.0
			for i, a := range striped.CAVAccuracy {
				mean += a / float64(len(striped.CAVAccuracy))
				if a <= 0.5 {
					t.Errorf("striped vs %s: CAV accuracy %.2f, not above chance", striped.RandomSets[i], a)
				}
			}
			if mean < 0.7 {
				t.Errorf("striped: mean CAV accuracy %.2f, want ≥ 0.7", mean)
			}
			t.Logf("striped→zebra %.2f (p %.2g), random500_9→zebra %.2f (p %.2g); mean CAV accuracy %.2f",
				striped.Mean, striped.PValue, random.Mean, random.PValue, mean)
		})
	}
}

// precision bf16 or fp16 on the CPU runs fp32 (autocast is CUDA only): the
// same scores as an fp32 run, not a silently different computation.
func TestHalfPrecisionOnTheCPUGivesTheFP32Scores(t *testing.T) {
	want, _ := mustRun(t, demoConfig(t, "", "tcav.significance.test=two-sample"), filepath.Join(t.TempDir(), "fp32"))
	for _, p := range []string{"bf16", "fp16"} {
		got, _ := mustRun(t, demoConfig(t, "", "tcav.significance.test=two-sample", "precision="+p), filepath.Join(t.TempDir(), p))
		for _, c := range []string{"striped", "random500_9"} {
			if a, b := entry(t, got, c), entry(t, want, c); !slices.Equal(a.Scores, b.Scores) || a.PValue != b.PValue {
				t.Errorf("precision %s on the CPU: %s scores %v (p %g), fp32 %v (p %g)", p, c, a.Scores, a.PValue, b.Scores, b.PValue)
			}
		}
	}
}

// Feature collision toward a concept: promoting a random set toward the
// striped activations raises its TCAV score for zebra, within the budget.
func TestFeatureCollisionTowardAConceptPromotesIt(t *testing.T) {
	dir := t.TempDir()
	yaml := testdemo.Config{Name: "collide", Seed: 3, MaxImages: 16, BatchSize: 16}.YAML() + `tcav:
  targets: [zebra]
  concepts: [striped, random500_9]
  random: {prefix: random500_, count: 6}
  layers: [block3]
  significance: {test: two-sample}
attack:
  - {concept: random500_9, target: zebra, layer: block3, goal: promote, objective: feature-collision, toward: striped, eps: [0.0314], step: 0.004, steps: 30}
`
	res, _ := mustRun(t, loadConfig(t, dir, "c.yaml", yaml), filepath.Join(dir, "run"))
	if len(res.Attack) != 1 {
		t.Fatalf("%d attack entries, want 1", len(res.Attack))
	}
	a := res.Attack[0]
	t.Logf("random500_9→zebra: %.3f before, %.3f after (p %.2g, %s); L∞ %.4f", a.Before.Mean, a.After.Mean, a.After.PValue, a.After.Direction, a.Linf)
	if a.Objective != "feature-collision" || a.Goal != "promote" {
		t.Errorf("entry says %s/%s", a.Objective, a.Goal)
	}
	if !(a.After.Mean > a.Before.Mean+0.2) {
		t.Errorf("feature collision toward striped: score %.3f → %.3f, want a clear rise", a.Before.Mean, a.After.Mean)
	}
	if a.Linf > 0.0314+1e-6 {
		t.Errorf("L∞ %g over the budget 0.0314", a.Linf)
	}
}
