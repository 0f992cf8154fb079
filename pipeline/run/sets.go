package run

import (
	"fmt"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

// imageSet is the named set, listed, checked and hashed on first use: every
// chosen file's header is read, so a corrupt or unreadable file is found
// before any compute, and what preprocessing will do to the set's sizes is
// logged (and kept for validate).
func (e *experiment) imageSet(name string) (activations.Set, error) {
	if s, ok := e.sets[name]; ok {
		return s, nil
	}
	cfg := e.cfg
	files, err := images.ListSet(cfg.Data.Root, name, cfg.Data.SkipBadImages, e.log)
	if err != nil {
		return activations.Set{}, err
	}
	return e.addSet(name, images.Choose(files, cfg.Data.MaxImages, cfg.Seed, name))
}

// addSet checks and hashes the chosen files of a set and keeps it.
func (e *experiment) addSet(name string, files []string) (activations.Set, error) {
	cfg := e.cfg
	counts := map[[2]int]int{}
	kept := files[:0:0]
	for _, f := range files {
		w, h, err := images.Header(f)
		if err != nil {
			if !cfg.Data.SkipBadImages {
				return activations.Set{}, fmt.Errorf("%w (data.skip_bad_images: true skips it)", err)
			}
			e.log.WithField("file", f).Warnf("skipping image: %v", err)
			continue
		}
		counts[[2]int{h, w}]++
		kept = append(kept, f)
	}
	if len(kept) == 0 {
		return activations.Set{}, fmt.Errorf("data.root/%s: none of its %d images can be read", name, len(files))
	}
	var sizes []model.SizeCount
	for hw, n := range counts {
		sizes = append(sizes, model.SizeCount{H: hw[0], W: hw[1], N: n})
	}
	effect, warnings, err := e.model.Input.Effect(sizes)
	if err != nil {
		return activations.Set{}, err
	}
	e.log.WithField("set", name).Info(effect)
	for _, w := range warnings {
		e.log.WithField("set", name).Warn(w)
	}
	hash, err := images.ListHash(cfg.Data.Root, kept)
	if err != nil {
		return activations.Set{}, err
	}
	s := activations.Set{Name: name, Files: kept, Hash: hash}
	e.sets[name] = s
	e.effects[name] = effect
	e.manifest.ImageLists[name] = hash
	return s, nil
}
