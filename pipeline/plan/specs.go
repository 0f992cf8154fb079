package plan

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/facets"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// TCAV is the TCAV stage's spec. With tcav.cavs_from the concept and random
// sets are names only: their images are not read.
func (p *Plan) TCAV() tcav.Spec {
	cfg := p.Cfg.TCAV
	spec := tcav.Spec{Layers: cfg.Layers, Method: p.Method, Significance: p.Significance(), Stored: p.Stored}
	set := func(name string) activations.Set {
		if s, ok := p.Sets[name]; ok {
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
		spec.Targets = append(spec.Targets, p.target(t))
	}
	p.warnResolution(len(spec.Randoms), "tcav")
	return spec
}

// warnResolution says up front when the calibrated test cannot reach its
// threshold with r random sets, and how many it needs.
func (p *Plan) warnResolution(r int, what string) {
	sig := p.Significance()
	if sig.Method != stats.Calibrated {
		return
	}
	th := sig.Threshold(len(p.Cfg.TCAV.Concepts))
	if !stats.Reachable(r, th) {
		p.Log.Warnf("%s: the calibrated test %s (threshold %.3g): no concept can be called significant; it needs %d random sets (tcav.random, or tcav.random.from a pool folder)",
			what, stats.Resolution(r), th, stats.RandomSetsNeeded(th))
	}
}

// Attack is the spec of attack i: its sets, class, budget and judges.
func (p *Plan) Attack(i int) attack.Spec {
	a := p.Cfg.Attack[i]
	randoms := p.Cfg.TCAV.Random.Sets
	spec := attack.Spec{Concept: p.Sets[a.Concept], Target: a.Target, Class: p.class(a.Target), ClassImages: p.Sets[p.Cfg.ClassSet(a.Target)],
		Layer: a.Layer, Goal: a.Goal, Objective: a.Objective, Norm: a.Norm, Eps: a.Eps, Step: a.Step, Steps: a.Steps,
		RandomStart: a.RandomStart, Momentum: a.Momentum, Tau: a.Tau,
		Stealth: attack.Stealth{Weight: a.Stealth.Weight, Form: a.Stealth.Form, Margin: a.Stealth.Margin},
		Seen:    p.sets(randoms[:len(randoms)-a.JudgeRandom]), Judge: p.sets(randoms[len(randoms)-a.JudgeRandom:]),
		Adaptive: adaptiveOf(a.Adaptive), Method: p.Method, Transfer: p.Transfer, Seed: p.Cfg.Seed,
		Variant: attackVariant(p.Cfg.Attack, i)}
	if a.Toward != "" && a.Toward != config.TowardRandom {
		t := p.Sets[a.Toward]
		spec.Toward = &t
	}
	return spec
}

// attackVariant names attack i's folders apart ("attack<i>") when an
// earlier attack poisons the same concept for the same target at the same
// layer with a budget in common: without it the later one would replace
// the earlier one's files while results.json still pointed both at them.
func attackVariant(attacks []config.Attack, i int) string {
	a := attacks[i]
	for _, b := range attacks[:i] {
		if b.Concept == a.Concept && b.Target == a.Target && b.Layer == a.Layer &&
			slices.ContainsFunc(a.Eps, func(e float64) bool { return slices.Contains(b.Eps, e) }) {
			return fmt.Sprintf("attack%d", i)
		}
	}
	return ""
}

// adaptiveOf is the attack's adaptive option, nil when it is off.
func adaptiveOf(c config.Adaptive) *attack.Adaptive {
	if len(c.Purifications) == 0 {
		return nil
	}
	a := &attack.Adaptive{ShiftWeight: c.ShiftWeight, AlignmentWeight: c.AlignmentWeight}
	for _, name := range c.Purifications {
		pur, _ := audit.ByName(name) // validated
		a.Purifications = append(a.Purifications, pur)
	}
	return a
}

// Audit is the audit stage's spec: audit.concepts (default tcav.concepts)
// and poisoned, the run-relative folders of the poisoned sets this run
// wrote under dir, each audited against the random sets, the first
// audit.calibration_sets of which are audited as concepts to calibrate it.
func (p *Plan) Audit(poisoned []string, dir string) (audit.Spec, error) {
	cfg := p.Cfg
	ac := cfg.Audit
	targets, layers := cfg.TCAV.Targets, cfg.TCAV.Layers
	if len(targets) == 0 { // the attacked classes
		for _, a := range cfg.Attack {
			if !slices.Contains(targets, a.Target) {
				targets = append(targets, a.Target)
			}
		}
	}
	if len(layers) == 0 {
		for _, a := range cfg.Attack {
			if !slices.Contains(layers, a.Layer) {
				layers = append(layers, a.Layer)
			}
		}
	}
	subjects, err := p.auditSubjects(poisoned, dir)
	if err != nil {
		return audit.Spec{}, err
	}
	randoms := cfg.TCAV.Random.Sets
	if ac.RandomSets != 8 || len(randoms)-1 < 8 {
		p.Log.Infof("audit: CAVs against %d random sets per audited set", min(ac.RandomSets, len(randoms)-1))
	}
	calibrating := min(len(randoms), ac.CalibrationSets)
	p.Log.Infof("audit: %d sets, calibrated on %d random sets audited as concepts (audit.calibration_sets %d, of %d)",
		len(subjects), calibrating, ac.CalibrationSets, len(randoms))
	spec := audit.Spec{Subjects: subjects, Layers: layers, Randoms: p.sets(randoms), Calibrating: calibrating,
		RandomSets: ac.RandomSets, FalseAlarm: ac.FalseAlarm, MinScore: ac.MinScore, Method: p.Method}
	for _, t := range targets {
		spec.Targets = append(spec.Targets, p.target(t))
	}
	return spec, nil
}

// auditSubjects are the audited concept sets and the poisoned sets under dir.
func (p *Plan) auditSubjects(poisoned []string, dir string) ([]audit.Subject, error) {
	names := p.Cfg.Audit.Concepts
	if len(names) == 0 {
		names = p.Cfg.TCAV.Concepts
	}
	var out []audit.Subject
	for _, n := range names {
		s, err := p.Set(n)
		if err != nil {
			return nil, fmt.Errorf("audit.concepts: %w", err)
		}
		out = append(out, audit.Subject{Set: s, Root: p.Cfg.Data.Root})
	}
	if !p.Cfg.Audit.Attacked {
		return out, nil
	}
	for _, images := range poisoned {
		s, err := p.listed(dir, strings.TrimSuffix(images, "/"), filepath.Base(strings.TrimSuffix(images, "/")))
		if err != nil {
			return nil, err
		}
		out = append(out, audit.Subject{Set: s, Images: images, Root: dir})
	}
	return out, nil
}

// listed is the set name of every image under root/rel, hashed: a folder
// cavforge wrote, so nothing is skipped or chosen.
func (p *Plan) listed(root, rel, name string) (activations.Set, error) {
	files, err := images.ListSet(root, rel, false, p.Log)
	if err != nil {
		return activations.Set{}, err
	}
	hash, err := images.ListHash(root, files)
	if err != nil {
		return activations.Set{}, err
	}
	return activations.Set{Name: name, Files: files, Hash: hash}, nil
}

// Facet is the spec of a faceted feature visualization; dir is the run
// directory the attack stage wrote its poisoned sets into. The caller
// supplies what belongs to the device: Device, Cast and Progress.
func (p *Plan) Facet(f config.Facet, dir string) (facets.Spec, error) {
	concept, err := p.Set(f.Facet)
	if err != nil {
		return facets.Spec{}, err
	}
	name := FacetName(f.Target)
	spec := facets.Spec{Name: name, Target: p.facetTarget(f.Target), Facet: concept, Layers: f.FacetLayers,
		Strength: f.Strength, Batch: f.Batch, Size: f.Size, Steps: f.Steps, LR: f.LR,
		Seed:   cav.Seed(p.Cfg.Seed, "facet:"+f.Facet, name, strings.Join(f.FacetLayers, ",")),
		Method: p.Method, InputSize: p.Input.Size}
	for _, r := range p.Cfg.TCAV.Random.Sets {
		set, err := p.Set(r)
		if err != nil {
			return spec, err
		}
		spec.Randoms = append(spec.Randoms, set)
	}
	if f.CompareAttack {
		if spec.Poisoned, spec.PoisonedDir, err = p.facetPoisoned(f, dir); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// FacetName is a facet target as results.json names it.
func FacetName(t config.FacetTarget) string {
	if t.Class != "" {
		return t.Class
	}
	return fmt.Sprintf("%s-ch%d", t.Layer, t.Channel)
}

// facetTarget is the objective a facet's target names (its class and
// layer checked when the model opened).
func (p *Plan) facetTarget(t config.FacetTarget) facets.Objective {
	if t.Class != "" {
		return facets.Class(p.class(t.Class))
	}
	return facets.Channel{Layer: t.Layer, Channel: t.Channel}
}

// facetPoisoned is the poisoned facet concept set of compare_attack: this
// run's attack's under dir, or that of the run poisoned_from names.
func (p *Plan) facetPoisoned(f config.Facet, dir string) (*activations.Set, string, error) {
	root, rel := dir, ""
	var err error
	if f.PoisonedFrom != "" {
		abs, err := PoisonedFrom(f)
		if err != nil {
			return nil, "", fmt.Errorf("poisoned_from: %w", err)
		}
		root, rel = filepath.Dir(abs), filepath.Base(abs)
	} else if rel, err = p.attackedSetDir(f); err != nil {
		return nil, "", err
	}
	set, err := p.listed(root, rel, f.Facet)
	if err != nil {
		return nil, "", fmt.Errorf("compare_attack: the attack stage left no poisoned %s images at %s: %w", f.Facet, rel, err)
	}
	if f.PoisonedFrom != "" {
		rel = filepath.Join(root, rel)
		p.Log.WithField("facet", f.Facet).Infof("compare_attack: the poisoned %s set is %s's (%d images)", f.Facet, rel, len(set.Files))
	}
	return &set, rel, nil
}

// attackedSetDir is the run-relative folder of the poisoned facet concept
// set: the attack on that concept (one for the same target first) at its
// largest budget, named as the attack stage names it.
func (p *Plan) attackedSetDir(f config.Facet) (string, error) {
	var chosen *config.Attack
	index := -1
	for i, a := range p.Cfg.Attack {
		if a.Concept != f.Facet || len(a.Eps) == 0 {
			continue
		}
		if chosen == nil || (chosen.Target != f.Target.Class && a.Target == f.Target.Class) {
			chosen, index = &p.Cfg.Attack[i], i
		}
	}
	if chosen == nil {
		return "", fmt.Errorf("compare_attack: no attack on concept %q", f.Facet)
	}
	eps := slices.Max(chosen.Eps)
	return attack.Dir(chosen.Concept, chosen.Target, chosen.Layer, eps, attackVariant(p.Cfg.Attack, index)), nil
}
