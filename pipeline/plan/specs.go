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
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// TCAV is the TCAV stage's spec. With tcav.cavs_from the concept and random
// sets are names only: their images are not read.
func (p *Plan) TCAV() tcav.Spec {
	cfg := p.cfg.TCAV
	spec := tcav.Spec{Layers: cfg.Layers, Method: p.Method, Significance: p.Significance(), Stored: p.stored}
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
	return spec
}

// Attack is the spec of attack i: its sets, class, budget and judges.
func (p *Plan) Attack(i int) attack.Spec {
	a := p.cfg.Attack[i]
	randoms := p.cfg.TCAV.Random.Sets
	spec := attack.Spec{Concept: p.Sets[a.Concept], Target: a.Target, Class: p.class(a.Target), ClassImages: p.Sets[p.cfg.ClassSet(a.Target)],
		Layer: a.Layer, Goal: a.Goal, Objective: a.Objective, Norm: a.Norm, Eps: a.Eps, Step: a.Step, Steps: a.Steps,
		RandomStart: a.RandomStart, Momentum: a.Momentum, Tau: a.Tau,
		Stealth: attack.Stealth{Weight: a.Stealth.Weight, Form: a.Stealth.Form, Margin: a.Stealth.Margin},
		Seen:    p.lookup(randoms[:len(randoms)-a.JudgeRandom]), Judge: p.lookup(randoms[len(randoms)-a.JudgeRandom:]),
		Adaptive: adaptiveOf(a.Adaptive), Method: p.Method, Transfer: p.transfer, Seed: p.cfg.Seed,
		Variant: attackVariant(p.cfg.Attack, i)}
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
	cfg := p.cfg
	ac := cfg.Audit
	targets, layers := slices.Clone(cfg.TCAV.Targets), slices.Clone(cfg.TCAV.Layers)
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
	if def := config.DefaultAudit().RandomSets; ac.RandomSets != def || len(randoms)-1 < def {
		p.log.Infof("audit: CAVs against %d random sets per audited set", min(ac.RandomSets, len(randoms)-1))
	}
	calibrating := min(len(randoms), ac.CalibrationSets)
	p.log.Infof("audit: %d sets, calibrated on %d random sets audited as concepts (audit.calibration_sets %d, of %d)",
		len(subjects), calibrating, ac.CalibrationSets, len(randoms))
	spec := audit.Spec{Subjects: subjects, Layers: layers, Randoms: p.lookup(randoms), Calibrating: calibrating,
		RandomSets: ac.RandomSets, FalseAlarm: ac.FalseAlarm, MinScore: ac.MinScore, Method: p.Method}
	for _, t := range targets {
		spec.Targets = append(spec.Targets, p.target(t))
	}
	return spec, nil
}

// auditSubjects are the audited concept sets and the poisoned sets under dir.
func (p *Plan) auditSubjects(poisoned []string, dir string) ([]audit.Subject, error) {
	names := p.cfg.Audit.Concepts
	if len(names) == 0 {
		names = p.cfg.TCAV.Concepts
	}
	var out []audit.Subject
	for _, n := range names {
		s, err := p.Set(n)
		if err != nil {
			return nil, fmt.Errorf("audit.concepts: %w", err)
		}
		out = append(out, audit.Subject{Set: s, Root: p.cfg.Data.Root})
	}
	if !p.cfg.Audit.Attacked {
		return out, nil
	}
	for _, folder := range poisoned {
		rel := strings.TrimSuffix(folder, "/")
		s, err := p.folderSet(dir, rel, filepath.Base(rel))
		if err != nil {
			return nil, err
		}
		out = append(out, audit.Subject{Set: s, Images: folder, Root: dir})
	}
	return out, nil
}

// Facet is the spec of a faceted feature visualization; dir is the run
// directory the attack stage wrote its poisoned sets into. The caller
// supplies what belongs to the device: Device, Cast and Progress.
func (p *Plan) Facet(f config.Facet, dir string) (facets.Spec, error) {
	concept, err := p.Set(f.Facet)
	if err != nil {
		return facets.Spec{}, err
	}
	name := f.Target.Name()
	spec := facets.Spec{Name: name, Target: p.facetTarget(f.Target), Facet: concept, Layers: f.FacetLayers,
		Strength: f.Strength, Batch: f.Batch, Size: f.Size, Steps: f.Steps, LR: f.LR,
		Seed:   cav.Seed(p.cfg.Seed, "facet:"+f.Facet, name, strings.Join(f.FacetLayers, ",")),
		Method: p.Method, InputSize: p.input.Size}
	for _, r := range p.cfg.TCAV.Random.Sets {
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

// facetTarget is the objective a facet's target names (its class and
// layer checked when the model opened).
func (p *Plan) facetTarget(t config.FacetTarget) facets.Objective {
	if t.Class != "" {
		return facets.Class(p.class(t.Class))
	}
	return facets.Channel{Layer: t.Layer, Channel: t.Channel}
}
