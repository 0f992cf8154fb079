package run

import (
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/images"
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
	s, effect, err := activations.NewSet(e.cfg.Data.Root, name, files, e.model.Input, e.cfg.Data.SkipBadImages, e.log)
	if err != nil {
		return s, err
	}
	e.sets[name] = s
	e.effects[name] = effect
	e.manifest.ImageLists[name] = s.Hash
	return s, nil
}
