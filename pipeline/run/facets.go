package run

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/facets"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/report"
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
	clean, err := e.facetDirections(concept, f.FacetLayers)
	if err != nil {
		return err
	}
	name := safeName(targetName(f.Target)) + "-" + safeName(f.Facet)
	if err := os.MkdirAll(filepath.Join(e.dir, "facets"), 0o755); err != nil {
		return err
	}
	entry := report.FacetEntry{Target: targetName(f.Target), Facet: f.Facet, FacetLayers: f.FacetLayers,
		Strengths: facets.Strengths(f.Strength[0], f.Strength[1], f.Batch)}
	seed := cav.Seed(e.cfg.Seed, "facet:"+f.Facet, entry.Target, strings.Join(f.FacetLayers, ","))

	renders := []*facets.Result{}
	render := func(kind string, dirs []facets.Direction) ([]string, *facets.Measure, error) {
		res, err := e.renderFacet(f, target, dirs, entry.Strengths, seed)
		if err != nil {
			return nil, nil, fmt.Errorf("%s facet: %w", kind, err)
		}
		renders = append(renders, res)
		// Measured along the clean facet: how much of the facet each picture shows.
		m, err := facets.MeasureImages(e.model, res, target, clean, e.model.Input.Size)
		if err != nil {
			return nil, nil, err
		}
		var paths []string
		for i := range res.N {
			rel := fmt.Sprintf("facets/%s-%s-%d.png", name, kind, i)
			if err := images.WritePNG8(filepath.Join(e.dir, filepath.FromSlash(rel)), res.Image(i)); err != nil {
				return nil, nil, err
			}
			paths = append(paths, rel)
		}
		return paths, m, nil
	}
	var cleanM, attackedM *facets.Measure
	if entry.Clean, cleanM, err = render("clean", clean); err != nil {
		return err
	}
	entry.CleanProjection, entry.CleanTarget = sumProjections(cleanM), cleanM.Target
	if f.CompareAttack {
		root, dir := e.dir, ""
		if f.PoisonedFrom != "" {
			abs, err := poisonedSet(f)
			if err != nil {
				return fmt.Errorf("poisoned_from: %w", err)
			}
			root, dir = filepath.Dir(abs), filepath.Base(abs)
		} else if dir, err = e.attackedSetDir(f); err != nil {
			return err
		}
		files, err := images.ListSet(root, dir, false, e.log)
		if err != nil {
			return fmt.Errorf("compare_attack: the attack stage left no poisoned %s images at %s: %w", f.Facet, dir, err)
		}
		if f.PoisonedFrom != "" {
			dir = filepath.Join(root, dir)
			e.log.WithField("facet", f.Facet).Infof("compare_attack: the poisoned %s set is %s's (%d images)", f.Facet, dir, len(files))
		}
		hash, err := images.ListHash(root, files)
		if err != nil {
			return err
		}
		poisoned, err := e.facetDirections(activations.Set{Name: f.Facet, Files: files, Hash: hash}, f.FacetLayers)
		if err != nil {
			return err
		}
		entry.AttackImages = dir + "/"
		for i := range clean {
			entry.DirectionCosine = append(entry.DirectionCosine, cosine(clean[i].Weight, poisoned[i].Weight))
		}
		if entry.Attacked, attackedM, err = render("attacked", poisoned); err != nil {
			return err
		}
		entry.AttackedProjection, entry.AttackedTarget = sumProjections(attackedM), attackedM.Target
	}
	var rows [][]images.Image
	for _, r := range renders {
		var row []images.Image
		for i := range r.N {
			row = append(row, r.Image(i))
		}
		rows = append(rows, row)
	}
	sheet, err := facets.Sheet(rows, 2)
	if err != nil {
		return err
	}
	entry.Sheet = "facets/" + name + "-sheet.png"
	if err := images.WritePNG8(filepath.Join(e.dir, filepath.FromSlash(entry.Sheet)), sheet); err != nil {
		return err
	}
	e.log.WithField("facet", name).Infof("rendered %d strengths; projection on the clean facet %s",
		f.Batch, projectionSummary(entry))
	e.results.Facets = append(e.results.Facets, entry)
	return nil
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

// facetDirections fits the facet direction of concept at each layer: its
// CAVs against every random set (cached like TCAV's), averaged.
func (e *experiment) facetDirections(concept activations.Set, layers []string) ([]facets.Direction, error) {
	acts, err := e.extract.Extract(concept, layers)
	if err != nil {
		return nil, err
	}
	cavs := map[string][]*cav.CAV{}
	for _, r := range e.cfg.TCAV.Random.Sets {
		set, err := e.imageSet(r)
		if err != nil {
			return nil, err
		}
		racts, err := e.extract.Extract(set, layers)
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			c, err := e.fitter.Fit(acts[l], racts[l], e.method)
			if err != nil {
				return nil, err
			}
			cavs[l] = append(cavs[l], c)
		}
	}
	var dirs []facets.Direction
	for _, l := range layers {
		d, err := facets.MeanDirection(l, acts[l].Shape, cavs[l])
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// renderFacet renders the target through the facet directions, one
// strength per image, every image from the same start.
func (e *experiment) renderFacet(f config.Facet, target facets.Objective, dirs []facets.Direction, strengths []float64, seed uint64) (*facets.Result, error) {
	seeds := make([]uint64, f.Batch)
	for i := range seeds {
		seeds[i] = seed
	}
	p, err := facets.NewFourier(e.device, f.Size, f.Size, 0.01, seeds...)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	term, err := facets.NewFacet(e.device, target, dirs, strengths, 0)
	if err != nil {
		return nil, err
	}
	defer term.Close()
	return facets.Render(e.model, p, facets.Sum(target, term), facets.Settings{
		Steps: f.Steps, LR: f.LR, Seed: seed, Transforms: facets.Standard(),
		InputSize: e.model.Input.Size, Cast: e.extract.Cast,
		Progress: e.opts.Progress.New(fmt.Sprintf("facet %s (%d steps)", f.Facet, f.Steps), f.Steps)})
}

// attackedSetDir is the run-relative folder of the poisoned facet concept
// set: the attack on that concept (one for the same target first) at its
// largest budget, named as the attack stage names it.
func (e *experiment) attackedSetDir(f config.Facet) (string, error) {
	var chosen *config.Attack
	for i, a := range e.cfg.Attack {
		if a.Concept != f.Facet || len(a.Eps) == 0 {
			continue
		}
		if chosen == nil || (chosen.Target != f.Target.Class && a.Target == f.Target.Class) {
			chosen = &e.cfg.Attack[i]
		}
	}
	if chosen == nil {
		return "", fmt.Errorf("compare_attack: no attack on concept %q", f.Facet)
	}
	eps := slices.Max(chosen.Eps)
	return attackDir(*chosen, eps), nil
}

func targetName(t config.FacetTarget) string {
	if t.Class != "" {
		return t.Class
	}
	return fmt.Sprintf("%s-ch%d", t.Layer, t.Channel)
}

// safeName keeps a name usable as part of a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

func sumProjections(m *facets.Measure) []float64 {
	out := make([]float64, len(m.Target))
	for _, p := range m.Projections {
		for i, v := range p {
			out[i] += v
		}
	}
	return out
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func projectionSummary(e report.FacetEntry) string {
	f := func(v []float64) string {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	s := "clean " + f(e.CleanProjection)
	if e.AttackedProjection != nil {
		s += ", attacked " + f(e.AttackedProjection)
	}
	return s
}
