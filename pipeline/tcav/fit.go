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
	sets := append(append([]*activations.Activations(nil), randoms...), concepts...)
	names := make([]string, len(sets))
	for i, s := range sets {
		names[i] = s.Set
	}
	layer := ""
	if len(randoms) > 0 {
		layer = randoms[0].Layer
	}
	return layerOf(names[len(randoms):], names[:len(randoms)], layer, sig, func(pairs [][2]int) ([]*cav.CAV, error) {
		ps := make([]cav.Pair, len(pairs))
		for i, p := range pairs {
			ps[i] = cav.Pair{Concept: sets[p[0]], Random: sets[p[1]]}
		}
		// One batch, so that the fits run side by side.
		return f.FitAll(ps, m)
	})
}

// StoredLayer is FitLayer with the CAVs read from a run's cavs/ instead of
// fitted: those of the named sets, by classifier, of the given shape.
func StoredLayer(s *cav.Store, concepts, randoms []string, layer, classifier string, shape []int64, sig Significance) (*Layer, error) {
	names := append(append([]string(nil), randoms...), concepts...)
	return layerOf(concepts, randoms, layer, sig, func(pairs [][2]int) ([]*cav.CAV, error) {
		out := make([]*cav.CAV, len(pairs))
		for i, p := range pairs {
			c, err := s.Find(names[p[0]], names[p[1]], layer, classifier, shape)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	})
}

// LayerPairs are the CAVs one layer needs, as indices into the random sets
// followed by the concepts: the baseline (random i against i+1) first,
// then each concept against every random set, then null, the calibrated
// design's other random pairs (also at the end of pairs).
func LayerPairs(concepts, randoms int, sig Significance) (pairs, null [][2]int) {
	r := randoms
	for i := range r {
		pairs = append(pairs, [2]int{i, (i + 1) % r})
	}
	for c := range concepts {
		for i := range r {
			pairs = append(pairs, [2]int{r + c, i})
		}
	}
	if sig.Method == stats.Calibrated {
		baseline := map[[2]int]bool{}
		for i := range r {
			baseline[[2]int{i, (i + 1) % r}] = true
		}
		for _, p := range NewDesign(r, sig.Negatives).Pairs() {
			if !baseline[p] {
				null = append(null, p)
				pairs = append(pairs, p)
			}
		}
	}
	return pairs, null
}

// layerOf asks cavs for the pairs a Layer needs (see LayerPairs).
func layerOf(concepts, randoms []string, layer string, sig Significance, cavs func([][2]int) ([]*cav.CAV, error)) (*Layer, error) {
	r := len(randoms)
	tl := &Layer{Layer: layer, CAVs: map[string][]*cav.CAV{}}
	tl.Randoms = append(tl.Randoms, randoms...)
	tl.Concepts = append(tl.Concepts, concepts...)
	pairs, null := LayerPairs(len(concepts), r, sig)
	cs, err := cavs(pairs)
	if err != nil {
		return nil, err
	}
	tl.Baseline = cs[:r]
	for i, c := range concepts {
		tl.CAVs[c] = cs[r+i*r : r+(i+1)*r]
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
