package tcav

import (
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/stats"
)

// FitLayer fits what scoring concepts against randoms at one layer needs:
// every concept against every random set, the random-vs-random baseline
// (random i against random i+1), and for the calibrated test the other
// pairs of its design. The result has no Target or Grads yet.
func FitLayer(f *cav.Fitter, concepts, randoms []*activations.Activations, m cav.Method, sig Significance) (*Layer, error) {
	tl := &Layer{CAVs: map[string][]*cav.CAV{}}
	if len(randoms) > 0 {
		tl.Layer = randoms[0].Layer
	}
	for _, r := range randoms {
		tl.Randoms = append(tl.Randoms, r.Set)
	}
	for _, c := range concepts {
		tl.Concepts = append(tl.Concepts, c.Set)
	}
	// One batch, so that the fits run side by side; baseline first.
	pairs := append(cav.Baseline(randoms), cav.Against(concepts, randoms)...)
	var null [][2]int
	if sig.Method == stats.Calibrated {
		baseline := map[[2]int]bool{}
		for i := range randoms {
			baseline[[2]int{i, (i + 1) % len(randoms)}] = true
		}
		for _, p := range NewDesign(len(randoms), sig.Negatives).Pairs() {
			if !baseline[p] {
				null = append(null, p)
				pairs = append(pairs, cav.Pair{Concept: randoms[p[0]], Random: randoms[p[1]]})
			}
		}
	}
	cs, err := f.FitAll(pairs, m)
	if err != nil {
		return nil, err
	}
	r := len(randoms)
	tl.Baseline = cs[:r]
	for i, c := range concepts {
		tl.CAVs[c.Set] = cs[r+i*r : r+(i+1)*r]
	}
	if sig.Method == stats.Calibrated {
		tl.Null = map[[2]int]*cav.CAV{}
		for i, c := range tl.Baseline {
			tl.Null[[2]int{i, (i + 1) % r}] = c
		}
		for i, p := range null {
			tl.Null[p] = cs[r+len(concepts)*r+i]
		}
	}
	return tl, nil
}
