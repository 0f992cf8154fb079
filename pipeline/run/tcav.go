package run

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/images"
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
	sig := e.significance(len(cfg.Concepts))
	e.warnResolution(sig, len(cfg.Random.Sets), len(cfg.Concepts), "tcav")
	layers := map[string]*tcav.Layer{}
	if e.stored == nil {
		if err := e.fitLayers(layers, sig); err != nil {
			return err
		}
	}
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
				if layers[l] == nil { // tcav.cavs_from: the layer's shape is the gradients'
					if layers[l], err = tcav.StoredLayer(e.stored, cfg.Concepts, cfg.Random.Sets, l, e.method.Name, g.Shape, sig); err != nil {
						return fmt.Errorf("tcav.cavs_from: %w", err)
					}
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

// fitLayers extracts the activations of every concept and random set, then
// fits each layer's CAVs into layers.
func (e *experiment) fitLayers(layers map[string]*tcav.Layer, sig tcav.Significance) error {
	cfg := e.cfg.TCAV
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
	return e.timed("fit CAVs", func() error {
		for _, l := range cfg.Layers {
			concepts := make([]*activations.Activations, len(cfg.Concepts))
			for i, c := range cfg.Concepts {
				concepts[i] = acts[c][l]
			}
			randoms := make([]*activations.Activations, len(cfg.Random.Sets))
			for i, r := range cfg.Random.Sets {
				randoms[i] = acts[r][l]
			}
			tl, err := tcav.FitLayer(e.fitter, concepts, randoms, e.method, sig)
			if err != nil {
				return err
			}
			layers[l] = tl
		}
		return nil
	})
}

// significance is the configured test, with Bonferroni over tests concepts.
func (e *experiment) significance(tests int) tcav.Significance {
	s := e.cfg.TCAV.Significance
	return tcav.Significance{Method: stats.Method(s.Test), Alpha: s.Alpha, Bonferroni: s.Bonferroni,
		Tests: max(1, tests), Negatives: s.Negatives}
}

// warnResolution says up front when the calibrated test cannot reach its
// threshold with r random sets, and how many it needs.
func (e *experiment) warnResolution(sig tcav.Significance, r, concepts int, what string) {
	if sig.Method != stats.Calibrated {
		return
	}
	th := sig.Threshold(concepts)
	if !stats.Reachable(r, th) {
		e.log.Warnf("%s: the calibrated test %s (threshold %.3g): no concept can be called significant; it needs %d random sets (tcav.random, or tcav.random.from a pool folder)",
			what, stats.Resolution(r), th, stats.RandomSetsNeeded(th))
	}
}

// drawRandomSets fills the sets of tcav.random.from: the pool's images,
// shuffled by a seed from (seed, pool), cut into Count disjoint sets of
// data.max_images.
func (e *experiment) drawRandomSets() error {
	cfg := e.cfg
	r := cfg.TCAV.Random
	if r.From == "" {
		return nil
	}
	files, err := images.ListSet(cfg.Data.Root, r.From, cfg.Data.SkipBadImages, e.log)
	if err != nil {
		return fmt.Errorf("tcav.random.from: %w", err)
	}
	per := cfg.Data.MaxImages
	if need := r.Count * per; len(files) < need {
		return fmt.Errorf("tcav.random.from: data.root/%s has %d images, too few for %d disjoint sets of %d (tcav.random.count × data.max_images = %d)",
			r.From, len(files), r.Count, per, need)
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%d\x00random.from\x00%s", cfg.Seed, r.From)))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[0:8]), binary.LittleEndian.Uint64(h[8:16])))
	files = slices.Clone(files)
	rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	for i, name := range r.Sets {
		set := slices.Clone(files[i*per : (i+1)*per])
		slices.Sort(set)
		if _, err := e.addSet(name, set); err != nil {
			return err
		}
	}
	e.log.Infof("tcav.random.from: %d disjoint random sets of %d images drawn from data.root/%s (%d of its %d images)",
		r.Count, per, r.From, r.Count*per, len(files))
	return nil
}
