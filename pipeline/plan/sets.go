package plan

import (
	"fmt"
	"math"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
)

// ListImages lists every set the config's stages read, draws the sets of
// tcav.random.from, and refuses a set too small for a held-out CAV split,
// all before any compute.
func (p *Plan) ListImages() error {
	cfg := p.cfg
	// Stored CAVs need no concept or random images; other stages may.
	var names []string
	if cfg.TCAV.CAVsFrom == "" {
		names = append(names, cfg.TCAV.Concepts...)
	}
	randoms := cfg.TCAV.CAVsFrom == "" || len(cfg.Attack) > 0 || len(cfg.Facets) > 0 || cfg.Audit.Enabled
	if randoms {
		names = append(names, cfg.TCAV.Random.Sets...)
	}
	for _, t := range cfg.Targets() {
		names = append(names, cfg.ClassSet(t))
	}
	for _, a := range cfg.Attack {
		names = append(names, a.Concept)
		if a.Toward != "" && a.Toward != config.TowardRandom {
			names = append(names, a.Toward)
		}
	}
	for _, f := range cfg.Facets {
		names = append(names, f.Facet)
	}
	if randoms {
		if err := p.drawRandomSets(); err != nil {
			return err
		}
	}
	if cfg.Audit.Enabled {
		names = append(names, cfg.Audit.Concepts...)
	}
	for _, n := range names {
		if _, err := p.Set(n); err != nil {
			return err
		}
	}
	return p.checkSplits()
}

// Set is the named set, listed, checked and hashed on first use: every
// chosen file's header is read, so a corrupt or unreadable file is found
// before any compute, and what preprocessing will do to the set's sizes is
// logged (and kept for validate).
func (p *Plan) Set(name string) (activations.Set, error) {
	if s, ok := p.Sets[name]; ok {
		return s, nil
	}
	cfg := p.cfg
	files, err := images.ListSet(cfg.Data.Root, name, cfg.Data.SkipBadImages, p.log)
	if err != nil {
		return activations.Set{}, err
	}
	return p.add(name, images.Choose(files, cfg.Data.MaxImages, cfg.Seed, name))
}

// add checks and hashes the chosen files of a set and keeps it.
func (p *Plan) add(name string, files []string) (activations.Set, error) {
	s, effect, err := activations.NewSet(p.cfg.Data.Root, name, files, p.input, p.cfg.Data.SkipBadImages, p.log)
	if err != nil {
		return s, err
	}
	p.Sets[name] = s
	p.effects[name] = effect
	return s, nil
}

// drawRandomSets fills the sets of tcav.random.from: the pool's images,
// shuffled by a seed from (seed, pool), cut into Count disjoint sets of
// data.max_images.
func (p *Plan) drawRandomSets() error {
	cfg := p.cfg
	r := cfg.TCAV.Random
	if r.From == "" {
		return nil
	}
	files, err := images.ListSet(cfg.Data.Root, r.From, cfg.Data.SkipBadImages, p.log)
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
		if _, err := p.add(name, drawn[i]); err != nil {
			return err
		}
	}
	p.log.Infof("tcav.random.from: %d disjoint random sets of %d images drawn from data.root/%s (%d of its %d images)",
		r.Count, per, r.From, r.Count*per, len(files))
	return nil
}

// checkSplits finds the sets too small for a held-out CAV split before any
// compute: every set a CAV is fitted on needs an image on each side of the
// split.
func (p *Plan) checkSplits() error {
	cfg := p.cfg
	tf := cfg.TCAV.CAV.TestFraction
	names := append(append([]string(nil), cfg.TCAV.Concepts...), cfg.TCAV.Random.Sets...)
	for _, a := range cfg.Attack {
		names = append(names, a.Concept)
	}
	for _, f := range cfg.Facets {
		names = append(names, f.Facet)
	}
	for _, name := range names {
		set, listed := p.Sets[name]
		if !listed { // not read: tcav.cavs_from
			continue
		}
		n := len(set.Files)
		if test := int(math.Round(tf * float64(n))); test < 1 || n-test < 1 {
			need := 2
			for t := int(math.Round(tf * float64(need))); t < 1 || need-t < 1; t = int(math.Round(tf * float64(need))) {
				need++
			}
			return fmt.Errorf("data.root/%s: %d images are too few for a held-out CAV split of tcav.cav.test_fraction %g (it needs at least %d)",
				name, n, tf, need)
		}
	}
	return nil
}

// folderSet is every image under root/rel as the set name, hashed: a folder
// cavforge wrote, so nothing is skipped or chosen.
func (p *Plan) folderSet(root, rel, name string) (activations.Set, error) {
	files, err := images.ListSet(root, rel, false, p.log)
	if err != nil {
		return activations.Set{}, err
	}
	hash, err := images.ListHash(root, files)
	if err != nil {
		return activations.Set{}, err
	}
	return activations.Set{Name: name, Files: files, Hash: hash}, nil
}
