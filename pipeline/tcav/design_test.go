package tcav

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/stats"
)

func TestDesignTreatsEverySetAlike(t *testing.T) {
	for _, tt := range []struct {
		r, negatives, wantNeg, wantPairs int
	}{
		{6, 20, 6, 15},    // all 15 pairs of 6 sets
		{7, 0, 7, 21},     // 0 means all; an even ring (8) has an antipode
		{64, 10, 10, 315}, // 65 positions × 5 forward steps − the 10 that touch the concept
		{19, 9, 10, 90},   // rounded up to even
	} {
		d := NewDesign(tt.r, tt.negatives)
		if d.Negatives() != tt.wantNeg || len(d.Pairs()) != tt.wantPairs {
			t.Errorf("NewDesign(%d, %d): %d negatives, %d pairs; want %d and %d", tt.r, tt.negatives, d.Negatives(), len(d.Pairs()), tt.wantNeg, tt.wantPairs)
		}
		// Every position has the same number of neighbours (what makes the
		// concept's rank exact), and every random-random neighbourhood is
		// covered by exactly one pair.
		pairs := map[[2]int]int{}
		for _, p := range d.Pairs() {
			pairs[[2]int{min(p[0], p[1]), max(p[0], p[1])}]++
		}
		for p := 0; p <= tt.r; p++ {
			ns := d.neighbours(p)
			if len(ns) != tt.wantNeg {
				t.Errorf("R %d: position %d has %d neighbours, want %d", tt.r, p, len(ns), tt.wantNeg)
			}
			for _, q := range ns {
				if p > 0 && q > 0 && pairs[[2]int{min(p, q) - 1, max(p, q) - 1}] != 1 {
					t.Errorf("R %d: pair of positions %d, %d fitted %d times", tt.r, p, q, pairs[[2]int{min(p, q) - 1, max(p, q) - 1}])
				}
			}
		}
	}
}

func TestFlippedScoreCountsNegativeDerivatives(t *testing.T) {
	if got := flippedScore([]float64{0.5, -1, 2, 0, -0.5}); got != 0.4 {
		t.Fatalf("flipped score %g, want 0.4 (zero is neither side)", got)
	}
}

// calibratedLayer builds a layer of r random CAVs (random directions) and
// concepts up (along the class gradients), down (against them) and noise
// (one more random direction), over gradients that share a direction.
func calibratedLayer(r int) Layer {
	const d, n = 8, 20
	rng := rand.New(rand.NewPCG(3, 4))
	grads := &activations.Activations{Set: "cls", Layer: "l", N: n, Shape: []int64{d}, Data: make([]float32, n*d)}
	for i := 0; i < n; i++ {
		grads.Data[i*d] = 1 // the shared direction
		for j := 1; j < d; j++ {
			grads.Data[i*d+j] = float32(2 * rng.NormFloat64())
		}
	}
	unit := func(v []float32) *cav.CAV {
		s := 0.0
		for _, x := range v {
			s += float64(x * x)
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(s))
		}
		return &cav.CAV{Vector: v, Accuracy: 1}
	}
	randomDir := func(bias float32) *cav.CAV {
		v := make([]float32, d)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		v[0] += bias
		return unit(v)
	}
	l := Layer{Target: "t", Layer: "l", Grads: grads, Concepts: []string{"up", "down", "noise"},
		CAVs: map[string][]*cav.CAV{}, Null: map[[2]int]*cav.CAV{}}
	for i := 0; i < r; i++ {
		l.Randoms = append(l.Randoms, string(rune('a'+i%26))+string(rune('0'+i/26)))
		l.CAVs["up"] = append(l.CAVs["up"], randomDir(6))
		l.CAVs["down"] = append(l.CAVs["down"], randomDir(-6))
		l.CAVs["noise"] = append(l.CAVs["noise"], randomDir(0))
		l.Baseline = append(l.Baseline, randomDir(0))
	}
	for _, p := range NewDesign(r, 0).Pairs() {
		l.Null[p] = randomDir(0)
	}
	return l
}

func TestCalibratedEntriesRankTheConceptAmongTheRandomSets(t *testing.T) {
	l := calibratedLayer(19)
	entries, err := Entries("cpu", l, Significance{Method: stats.Calibrated, Alpha: 0.05, Negatives: 0})
	if err != nil {
		t.Fatal(err)
	}
	up, down, noise := entries[0], entries[1], entries[2]
	if !up.Significant || up.Direction != stats.Above || up.PValue != 1.0/20 || up.Test != stats.Calibrated || up.RandomSetCount != 19 {
		t.Errorf("up: p %g, significant %v, %s, test %q with %d sets; want p 1/20, significant above, calibrated, 19",
			up.PValue, up.Significant, up.Direction, up.Test, up.RandomSetCount)
	}
	if !down.Significant || down.Direction != stats.Below || down.Significance().Important() {
		t.Errorf("down: %+v; want significant below", down.Significance())
	}
	if noise.Significant {
		t.Errorf("noise: p %g significant", noise.PValue)
	}
	// With every set scored against every other, the concept's statistic is
	// its mean score, and the null has one mean per random set.
	if up.Null == nil || math.Abs(up.Null.Statistic-up.Mean) > 1e-12 || len(up.Null.Means) != 19 || up.Null.Negatives != 19 {
		t.Errorf("up's null: %+v", up.Null)
	}

	// Bonferroni over 3 concepts: 19 sets cannot reach 0.05/3.
	entries, err = Entries("cpu", l, Significance{Method: stats.Calibrated, Alpha: 0.05, Bonferroni: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Significant || e.Resolution != "cannot reach alpha with 19 random sets" || e.RandomSetsNeeded != 59 {
			t.Errorf("%s with Bonferroni: significant %v, resolution %q, needs %d", e.Concept, e.Significant, e.Resolution, e.RandomSetsNeeded)
		}
	}

	delete(l.Null, NewDesign(19, 0).Pairs()[3])
	if _, err := Entries("cpu", l, Significance{Method: stats.Calibrated, Alpha: 0.05}); err == nil {
		t.Error("a missing pair of the design: no error")
	}
}
