package run

import (
	"fmt"
	"slices"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// attacks runs every attack of the config (see attack.Stage.Run).
func (e *experiment) attacks() error {
	st := &attack.Stage{Model: e.model, Extract: e.extract, Judge: e.judge(), Dir: e.dir,
		BatchSize: e.cfg.Data.BatchSize, SkipBad: e.cfg.Data.SkipBadImages, Log: e.log, Progress: e.opts.Progress,
		Preprocess: func(in model.Input) attack.Extractor { return e.extractorFor(in) }}
	for i, a := range e.cfg.Attack {
		spec := e.attackSpec(a)
		spec.Variant = attackVariant(e.cfg.Attack, i)
		entries, err := st.Run(spec)
		if err != nil {
			return fmt.Errorf("attack %s→%s at %s: %w", a.Concept, a.Target, a.Layer, err)
		}
		e.results.Attack = append(e.results.Attack, entries...)
	}
	return nil
}

// attackSpec resolves an attack entry: its sets, class and judge.
func (e *experiment) attackSpec(a config.Attack) attack.Spec {
	randoms := e.cfg.TCAV.Random.Sets
	sets := func(names []string) []activations.Set {
		out := make([]activations.Set, len(names))
		for i, n := range names {
			out[i] = e.sets[n]
		}
		return out
	}
	class, _ := e.classIndex(a.Target) // checked by loadModel
	spec := attack.Spec{Concept: e.sets[a.Concept], Target: a.Target, Class: class, ClassImages: e.sets[e.classSet(a.Target)],
		Layer: a.Layer, Goal: a.Goal, Objective: a.Objective, Norm: a.Norm, Eps: a.Eps, Step: a.Step, Steps: a.Steps,
		RandomStart: a.RandomStart, Momentum: a.Momentum, Tau: a.Tau,
		Stealth: attack.Stealth{Weight: a.Stealth.Weight, Form: a.Stealth.Form, Margin: a.Stealth.Margin},
		Seen:    sets(randoms[:len(randoms)-a.JudgeRandom]), Judge: sets(randoms[len(randoms)-a.JudgeRandom:]),
		Adaptive: adaptiveOf(a.Adaptive), Method: e.method, Transfer: e.transfer, Seed: e.cfg.Seed}
	if a.Toward != "" && a.Toward != config.TowardRandom {
		t := e.sets[a.Toward]
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
		p, _ := audit.ByName(name) // validated
		a.Purifications = append(a.Purifications, p)
	}
	return a
}

// judge scores a set as the TCAV stage would, corrected as the TCAV stage
// corrects its concepts, so that a "before" verdict is the one the TCAV
// table shows.
func (e *experiment) judge() tcav.Judge {
	return tcav.Judge{Fitter: e.fitter, Device: e.device, Significance: e.significance(len(e.cfg.TCAV.Concepts))}
}
