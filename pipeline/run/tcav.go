package run

import (
	"fmt"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// tcav runs the TCAV experiment of the config: activations of every concept
// and random set, class gradients once per (target, layer), CAVs of every
// concept against every random set plus the random-vs-random baseline, then
// scores and significance.
func (e *experiment) tcav() error {
	cfg := e.cfg.TCAV
	if len(cfg.Targets) == 0 {
		return nil
	}
	acts := map[string]map[string]*activations.Activations{} // set → layer → values
	err := e.timed("extract activations", func() error {
		names := append(append([]string(nil), cfg.Concepts...), cfg.Random.Sets...)
		for i, name := range names {
			if i+1 < len(names) {
				e.extract.Prefetch(e.sets[names[i+1]], cfg.Layers)
			}
			a, err := e.extract.Extract(e.sets[name], cfg.Layers)
			if err != nil {
				return err
			}
			acts[name] = a
		}
		return nil
	})
	if err != nil {
		return err
	}
	settings := cav.Settings{Classifier: cfg.CAV.Classifier, Alpha: cfg.CAV.Alpha, Epochs: cfg.CAV.Epochs,
		TestFraction: cfg.CAV.TestFraction}
	randoms := cfg.Random.Sets
	layers := map[string]*tcav.Layer{}
	err = e.timed("fit CAVs", func() error {
		for _, l := range cfg.Layers {
			tl := &tcav.Layer{Layer: l, Randoms: randoms, Concepts: cfg.Concepts, CAVs: map[string][]*cav.CAV{}}
			for i, r := range randoms {
				next := randoms[(i+1)%len(randoms)]
				c, err := e.fitCAV(acts[r][l], acts[next][l], settings)
				if err != nil {
					return err
				}
				tl.Baseline = append(tl.Baseline, c)
			}
			for _, concept := range cfg.Concepts {
				for _, r := range randoms {
					c, err := e.fitCAV(acts[concept][l], acts[r][l], settings)
					if err != nil {
						return err
					}
					tl.CAVs[concept] = append(tl.CAVs[concept], c)
				}
			}
			layers[l] = tl
		}
		return nil
	})
	if err != nil {
		return err
	}
	sig := tcav.Significance{Method: stats.Method(cfg.Significance.Test), Alpha: cfg.Significance.Alpha,
		Bonferroni: cfg.Significance.Bonferroni}
	return e.timed("score", func() error {
		for _, target := range cfg.Targets {
			class, err := e.classIndex(target)
			if err != nil {
				return err
			}
			for _, l := range cfg.Layers {
				g, err := e.extract.ClassGradients(e.sets[e.classSet(target)], l, class)
				if err != nil {
					return err
				}
				tl := *layers[l]
				tl.Target, tl.Grads = target, g
				entries, err := tcav.Entries(e.device, tl, sig)
				if err != nil {
					return err
				}
				e.results.TCAV = append(e.results.TCAV, entries...)
			}
		}
		return nil
	})
}

// fitCAV fits (or reads from the cache) the CAV of concept against random.
func (e *experiment) fitCAV(concept, random *activations.Activations, st cav.Settings) (*cav.CAV, error) {
	seed := cav.Seed(e.cfg.Seed, concept.Set, random.Set, concept.Layer)
	key := cache.Key("cav/v2", e.extract.ModelKey, concept.Layer, concept.Hash, random.Hash,
		fmt.Sprintf("%+v", st), fmt.Sprint(seed))
	if !e.opts.Force || e.freshCAVs[key] {
		_, data, ok, err := e.cache.Get(key)
		if err != nil {
			return nil, err
		}
		if d := concept.Dim(); ok && len(data) == d+3 {
			e.manifest.CacheHits++
			correct, tested := int(data[d+1]), int(data[d+2])
			return &cav.CAV{Concept: concept.Set, Random: random.Set, Layer: concept.Layer,
				Vector: data[:d], Bias: float64(data[d]), Correct: correct, Tested: tested,
				Accuracy: float64(correct) / float64(tested)}, nil
		}
	}
	ce, err := e.examples(concept)
	if err != nil {
		return nil, err
	}
	re, err := e.examples(random)
	if err != nil {
		return nil, err
	}
	c, err := cav.Fit(ce, re, st, seed)
	if err != nil {
		return nil, err
	}
	// Counts, not the ratio: they survive float32 storage exactly.
	data := append(append([]float32(nil), c.Vector...), float32(c.Bias), float32(c.Correct), float32(c.Tested))
	if e.freshCAVs == nil {
		e.freshCAVs = map[string]bool{}
	}
	e.freshCAVs[key] = true
	return c, e.cache.Put(key, []int64{int64(len(data))}, data)
}

// release frees a's device copy now, for sets used once (a perturbed set).
func (e *experiment) release(a *activations.Activations) {
	key := a.Hash + "\x00" + a.Layer
	if x, ok := e.onDevice[key]; ok {
		x.Close()
		delete(e.onDevice, key)
	}
}

// examples returns a's device copy, uploading it on first use; the run frees
// them all at its end.
func (e *experiment) examples(a *activations.Activations) (*cav.Examples, error) {
	key := a.Hash + "\x00" + a.Layer
	if x, ok := e.onDevice[key]; ok {
		return x, nil
	}
	x, err := cav.Upload(e.device, a)
	if err != nil {
		return nil, err
	}
	if e.onDevice == nil {
		e.onDevice = map[string]*cav.Examples{}
	}
	e.onDevice[key] = x
	return x, nil
}
