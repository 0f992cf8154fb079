package run

import (
	"fmt"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// tcav runs the TCAV stage over the sets of tcav.*.
func (e *experiment) tcav() error {
	if len(e.cfg.TCAV.Targets) == 0 {
		return nil
	}
	spec, err := e.tcavSpec()
	if err != nil {
		return err
	}
	e.warnResolution(spec.Significance, len(spec.Randoms), len(spec.Concepts), "tcav")
	entries, err := tcav.Run(spec, e.extract, e.fitter, e.device, e.timed)
	e.results.TCAV = append(e.results.TCAV, entries...)
	return err
}

// tcavSpec resolves the TCAV stage's spec from the config.
func (e *experiment) tcavSpec() (tcav.Spec, error) {
	cfg := e.cfg.TCAV
	spec := tcav.Spec{Layers: cfg.Layers, Method: e.method, Significance: e.significance(len(cfg.Concepts)), Stored: e.stored}
	set := func(name string) activations.Set {
		if s, ok := e.sets[name]; ok {
			return s
		}
		return activations.Set{Name: name} // not listed: tcav.cavs_from
	}
	for _, c := range cfg.Concepts {
		spec.Concepts = append(spec.Concepts, set(c))
	}
	for _, r := range cfg.Random.Sets {
		spec.Randoms = append(spec.Randoms, set(r))
	}
	for _, t := range cfg.Targets {
		class, err := e.classIndex(t)
		if err != nil {
			return spec, err
		}
		spec.Targets = append(spec.Targets, tcav.Target{Name: t, Class: class, Images: e.sets[e.classSet(t)]})
	}
	return spec, nil
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
	drawn := images.Disjoint(files, r.Count, per, cfg.Seed, r.From)
	for i, name := range r.Sets {
		if _, err := e.addSet(name, drawn[i]); err != nil {
			return err
		}
	}
	e.log.Infof("tcav.random.from: %d disjoint random sets of %d images drawn from data.root/%s (%d of its %d images)",
		r.Count, per, r.From, r.Count*per, len(files))
	return nil
}
