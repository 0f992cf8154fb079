package cav

import (
	"slices"
	"testing"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cache"
)

// The Fitter reads what an earlier run cached (a hit, the same CAV), with
// Force fits again once and then reads what it wrote itself, fits each
// distinct pair once however often it is asked for, and records every
// distinct CAV it returned once, with its shape, classifier and seed.
func TestFitterCachesForcesOnceAndRecordsEachCAVOnce(t *testing.T) {
	dir := t.TempDir()
	c := gaussian("c", 30, shifted(4, 2), 1, 1)
	r1 := gaussian("r1", 30, make([]float32, 4), 1, 2)
	r2 := gaussian("r2", 30, make([]float32, 4), 1, 3)
	c.Hash, r1.Hash, r2.Hash = "hc", "h1", "h2"
	m, err := Settings{Classifier: "mean-diff", TestFraction: 0.33}.Method()
	if err != nil {
		t.Fatal(err)
	}
	newFitter := func(force bool) *Fitter {
		return &Fitter{Device: "cpu", Cache: cache.Cache{Dir: dir}, ModelKey: "m", Seed: 7, Force: force}
	}
	first := newFitter(false)
	defer first.Close()
	var recorded []*CAV
	first.Record = func(c *CAV) error { recorded = append(recorded, c); return nil }
	cs, err := first.FitAll([]Pair{{c, r1}, {c, r2}, {c, r1}}, m)
	if err != nil {
		t.Fatal(err)
	}
	if first.Hits != 0 || cs[0] != cs[2] || len(recorded) != 2 {
		t.Fatalf("first fit: %d hits, repeated pair shared %v, %d recorded; want 0, true, 2", first.Hits, cs[0] == cs[2], len(recorded))
	}
	if got := recorded[0]; !slices.Equal(got.Shape, []int64{4}) || got.Classifier != "mean-diff" || got.Seed != Seed(7, "c", "r1", "l") ||
		got.ConceptImages != "hc" || got.RandomImages != "h1" {
		t.Errorf("recorded CAV: shape %v, classifier %q, seed %d, images %q/%q", got.Shape, got.Classifier, got.Seed, got.ConceptImages, got.RandomImages)
	}

	again := newFitter(false)
	defer again.Close()
	b, err := again.Against([]*activations.Activations{c}, []*activations.Activations{r1, r2}, m)
	if err != nil {
		t.Fatal(err)
	}
	if again.Hits != 2 || !slices.Equal(b[0][0].Vector, cs[0].Vector) || b[0][1].Accuracy != cs[1].Accuracy {
		t.Errorf("second run: %d hits, want 2 with the same CAVs", again.Hits)
	}

	forced := newFitter(true)
	defer forced.Close()
	if _, err := forced.Baseline([]*activations.Activations{r1, r2}, m); err != nil {
		t.Fatal(err)
	}
	if forced.Hits != 0 {
		t.Errorf("force: %d hits on the first ask, want 0", forced.Hits)
	}
	if _, err := forced.Fit(r1, r2, m); err != nil {
		t.Fatal(err)
	}
	if forced.Hits != 1 {
		t.Errorf("force: %d hits when asked again, want 1 (what it wrote itself)", forced.Hits)
	}
}

// The same images seen through other preprocessing (the attack's transfer
// check) are other activations: their CAV is fitted on their own values,
// not read from the run's CAV of the same image lists, neither from the
// cache nor from the device copy, and it is not written to cavs/.
func TestSameImagesThroughOtherPreprocessingGetTheirOwnCAV(t *testing.T) {
	m, err := Settings{Classifier: "mean-diff", TestFraction: 0.33}.Method()
	if err != nil {
		t.Fatal(err)
	}
	f := &Fitter{Device: "cpu", Cache: cache.Cache{Dir: t.TempDir()}, ModelKey: "run", Seed: 7}
	defer f.Close()
	var recorded int
	f.Record = func(*CAV) error { recorded++; return nil }
	// Through the run's preprocessing the concept sits along axis 0,
	// through the other along axis 1.
	c := gaussian("c", 30, shifted(4, 3), 0.5, 1)
	r := gaussian("r", 30, make([]float32, 4), 0.5, 2)
	c.Hash, r.Hash, c.Model, r.Model = "hc", "hr", "run", "run"
	alongY := make([]float32, 4)
	alongY[1] = 3
	c2 := gaussian("c", 30, alongY, 0.5, 1)
	r2 := gaussian("r", 30, make([]float32, 4), 0.5, 2)
	c2.Hash, r2.Hash, c2.Model, r2.Model = "hc", "hr", "other", "other"

	run, err := f.Fit(c, r, m)
	if err != nil {
		t.Fatal(err)
	}
	alt, err := f.Fit(c2, r2, m)
	if err != nil {
		t.Fatal(err)
	}
	if run.Vector[0] < 0.9 || alt.Vector[1] < 0.9 {
		t.Errorf("CAVs %v and %v: want the first along axis 0 and the second along axis 1", run.Vector, alt.Vector)
	}
	if f.Hits != 0 || recorded != 1 {
		t.Errorf("%d cache hits and %d CAVs recorded; want 0 and 1 (the run's)", f.Hits, recorded)
	}
}

// A method's cache key changes with every setting its classifier reads,
// and only with those: mean-diff ignores the SGD settings.
func TestMethodKeyHoldsWhatTheClassifierReads(t *testing.T) {
	key := func(st Settings) string {
		t.Helper()
		m, err := st.Method()
		if err != nil {
			t.Fatal(err)
		}
		return m.key
	}
	base := Settings{Classifier: "sgd-hinge", Alpha: 0.01, Epochs: 50, TestFraction: 0.33}
	for name, st := range map[string]Settings{
		"alpha":         {Classifier: "sgd-hinge", Alpha: 0.02, Epochs: 50, TestFraction: 0.33},
		"epochs":        {Classifier: "sgd-hinge", Alpha: 0.01, Epochs: 51, TestFraction: 0.33},
		"lr":            {Classifier: "sgd-hinge", Alpha: 0.01, Epochs: 50, TestFraction: 0.33, LR: 0.1},
		"test_fraction": {Classifier: "sgd-hinge", Alpha: 0.01, Epochs: 50, TestFraction: 0.4},
		"classifier":    {Classifier: "logistic", Alpha: 0.01, Epochs: 50, TestFraction: 0.33},
	} {
		if key(st) == key(base) {
			t.Errorf("sgd-hinge: another %s, the same cache key", name)
		}
	}
	md := Settings{Classifier: "mean-diff", Alpha: 0.01, Epochs: 50, TestFraction: 0.33}
	if key(md) != key(Settings{Classifier: "mean-diff", Alpha: 0.5, Epochs: 3, LR: 1, TestFraction: 0.33}) {
		t.Error("mean-diff: SGD settings it does not read change its cache key")
	}
	if key(md) == key(Settings{Classifier: "mean-diff", TestFraction: 0.4}) {
		t.Error("mean-diff: another test_fraction, the same cache key")
	}
}
