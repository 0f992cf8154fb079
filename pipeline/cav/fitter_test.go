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
