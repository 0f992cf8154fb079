package run

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/facets"
	"github.com/cavforge/cavforge/pipeline/images"
)

// facets renders every faceted feature visualization of the config: the
// target through the facet fitted on the clean concept set and, with
// compare_attack, through the facet fitted on the attack stage's poisoned
// set, from the same start and the same transforms.
func (e *experiment) facets() error {
	for _, f := range e.cfg.Facets {
		if err := e.facet(f); err != nil {
			return fmt.Errorf("facet %s through %s: %w", targetName(f.Target), f.Facet, err)
		}
	}
	return nil
}

func (e *experiment) facet(f config.Facet) error {
	target, err := e.facetTarget(f.Target)
	if err != nil {
		return err
	}
	concept, err := e.imageSet(f.Facet)
	if err != nil {
		return err
	}
	spec := facets.Spec{Name: targetName(f.Target), Target: target, Facet: concept, Layers: f.FacetLayers,
		Strength: f.Strength, Batch: f.Batch, Size: f.Size, Steps: f.Steps, LR: f.LR,
		Seed:   cav.Seed(e.cfg.Seed, "facet:"+f.Facet, targetName(f.Target), strings.Join(f.FacetLayers, ",")),
		Method: e.method, Device: e.device, InputSize: e.model.Input.Size, Cast: e.extract.Cast, Progress: e.opts.Progress}
	for _, r := range e.cfg.TCAV.Random.Sets {
		set, err := e.imageSet(r)
		if err != nil {
			return err
		}
		spec.Randoms = append(spec.Randoms, set)
	}
	if f.CompareAttack {
		if spec.Poisoned, spec.PoisonedDir, err = e.facetPoisoned(f); err != nil {
			return err
		}
	}
	entry, err := facets.Run(spec, e.model, e.extract, e.fitter, e.dir)
	if err != nil {
		return err
	}
	e.log.WithField("facet", strings.TrimSuffix(path.Base(entry.Sheet), "-sheet.png")).Infof("rendered %d strengths; projection on the clean facet %s",
		f.Batch, entry.ProjectionSummary())
	e.results.Facets = append(e.results.Facets, *entry)
	return nil
}

// facetPoisoned is the poisoned facet concept set of compare_attack: this
// run's attack's, or that of the run poisoned_from names.
func (e *experiment) facetPoisoned(f config.Facet) (*activations.Set, string, error) {
	root, dir := e.dir, ""
	var err error
	if f.PoisonedFrom != "" {
		abs, err := poisonedSet(f)
		if err != nil {
			return nil, "", fmt.Errorf("poisoned_from: %w", err)
		}
		root, dir = filepath.Dir(abs), filepath.Base(abs)
	} else if dir, err = e.attackedSetDir(f); err != nil {
		return nil, "", err
	}
	files, err := images.ListSet(root, dir, false, e.log)
	if err != nil {
		return nil, "", fmt.Errorf("compare_attack: the attack stage left no poisoned %s images at %s: %w", f.Facet, dir, err)
	}
	if f.PoisonedFrom != "" {
		dir = filepath.Join(root, dir)
		e.log.WithField("facet", f.Facet).Infof("compare_attack: the poisoned %s set is %s's (%d images)", f.Facet, dir, len(files))
	}
	hash, err := images.ListHash(root, files)
	if err != nil {
		return nil, "", err
	}
	return &activations.Set{Name: f.Facet, Files: files, Hash: hash}, dir, nil
}

// facetTarget is the objective a facet's target names.
func (e *experiment) facetTarget(t config.FacetTarget) (facets.Objective, error) {
	if t.Class != "" {
		k, err := e.classIndex(t.Class)
		if err != nil {
			return nil, err
		}
		return facets.Class(k), nil
	}
	if err := e.model.CheckLayers([]string{t.Layer}); err != nil {
		return nil, err
	}
	return facets.Channel{Layer: t.Layer, Channel: t.Channel}, nil
}

// attackedSetDir is the run-relative folder of the poisoned facet concept
// set: the attack on that concept (one for the same target first) at its
// largest budget, named as the attack stage names it.
func (e *experiment) attackedSetDir(f config.Facet) (string, error) {
	var chosen *config.Attack
	index := -1
	for i, a := range e.cfg.Attack {
		if a.Concept != f.Facet || len(a.Eps) == 0 {
			continue
		}
		if chosen == nil || (chosen.Target != f.Target.Class && a.Target == f.Target.Class) {
			chosen, index = &e.cfg.Attack[i], i
		}
	}
	if chosen == nil {
		return "", fmt.Errorf("compare_attack: no attack on concept %q", f.Facet)
	}
	eps := slices.Max(chosen.Eps)
	return attack.Dir(chosen.Concept, chosen.Target, chosen.Layer, eps, attackVariant(e.cfg.Attack, index)), nil
}

func targetName(t config.FacetTarget) string {
	if t.Class != "" {
		return t.Class
	}
	return fmt.Sprintf("%s-ch%d", t.Layer, t.Channel)
}
