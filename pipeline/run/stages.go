package run

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/facets"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/plan"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// StageNames are the stages --stages can choose, in the order they run.
var StageNames = []string{"tcav", "attack", "audit", "facets"}

// CheckStages checks, before any work, that the chosen stages (none: all)
// have what they need: a facet with compare_attack needs the poisoned set
// that the attack stage writes, or an earlier run's (facets.N.poisoned_from).
func CheckStages(cfg *config.Config, stages []string) error {
	for _, s := range stages {
		if !slices.Contains(StageNames, s) {
			return fmt.Errorf("--stages: unknown stage %q (%s)", s, strings.Join(StageNames, ", "))
		}
	}
	chosen := func(s string) bool { return len(stages) == 0 || slices.Contains(stages, s) }
	if !chosen("facets") {
		return nil
	}
	for i, f := range cfg.Facets {
		if !f.CompareAttack {
			continue
		}
		if f.PoisonedFrom != "" {
			if _, err := plan.PoisonedFrom(f); err != nil {
				return fmt.Errorf("facets.%d.poisoned_from: %w", i, err)
			}
			continue
		}
		if !chosen("attack") {
			return fmt.Errorf("facets.%d.compare_attack: the poisoned %s set comes from the attack stage, which --stages %s leaves out; "+
				"add attack to --stages, or set facets.%d.poisoned_from to an earlier run directory", i, f.Facet, strings.Join(stages, ","), i)
		}
	}
	return nil
}

// tcav runs the TCAV stage over the sets of tcav.*.
func (e *experiment) tcav() error {
	if len(e.cfg.TCAV.Targets) == 0 {
		return nil
	}
	e.plan.WarnUnreachable()
	entries, err := tcav.Run(e.plan.TCAV(), e.extract, e.fitter, e.device, e.timed)
	e.results.TCAV = append(e.results.TCAV, entries...)
	return err
}

// attacks runs every attack of the config (see attack.Stage.Run).
func (e *experiment) attacks() error {
	st := &attack.Stage{Model: e.model, Extract: e.extract, Judge: e.judge(), Dir: e.dir,
		BatchSize: e.cfg.Data.BatchSize, SkipBad: e.cfg.Data.SkipBadImages, Log: e.log, Progress: e.opts.Progress,
		Preprocess: func(in model.Input) attack.Extractor { return e.extractorFor(in) }}
	for i, a := range e.cfg.Attack {
		entries, err := st.Run(e.plan.Attack(i))
		if err != nil {
			return fmt.Errorf("attack %s→%s at %s: %w", a.Concept, a.Target, a.Layer, err)
		}
		e.results.Attack = append(e.results.Attack, entries...)
	}
	return nil
}

// audit runs the audit stage: each random set audited as if it were a
// concept (the calibration), then every audited set, this run's poisoned
// sets among them.
func (e *experiment) audit() error {
	if !e.cfg.Audit.Enabled {
		return nil
	}
	var poisoned []string
	for _, a := range e.results.Attack {
		poisoned = append(poisoned, a.Images)
	}
	spec, err := e.plan.Audit(poisoned, e.dir)
	if err != nil {
		return err
	}
	st := &audit.Stage{Extract: e.extract, Judge: e.judge(), Dir: e.dir, Log: e.log}
	entries, err := st.Run(spec)
	e.results.Audit = append(e.results.Audit, entries...)
	return err
}

// facets renders every faceted feature visualization of the config: the
// target through the facet fitted on the clean concept set and, with
// compare_attack, through the facet fitted on the attack stage's poisoned
// set, from the same start and the same transforms.
func (e *experiment) facets() error {
	for _, f := range e.cfg.Facets {
		entry, err := e.facet(f)
		if err != nil {
			return fmt.Errorf("facet %s through %s: %w", f.Target.Name(), f.Facet, err)
		}
		e.log.WithField("facet", strings.TrimSuffix(path.Base(entry.Sheet), "-sheet.png")).Infof("rendered %d strengths; projection on the clean facet %s",
			f.Batch, entry.ProjectionSummary())
		e.results.Facets = append(e.results.Facets, *entry)
	}
	return nil
}

func (e *experiment) facet(f config.Facet) (*facets.Entry, error) {
	spec, err := e.plan.Facet(f, e.dir)
	if err != nil {
		return nil, err
	}
	spec.Device, spec.Cast, spec.Progress = e.device, e.extract.Cast, e.opts.Progress
	return facets.Run(spec, e.model, e.extract, e.fitter, e.dir)
}

// judge scores a set as the TCAV stage would (see plan.Significance).
func (e *experiment) judge() tcav.Judge {
	return tcav.Judge{Fitter: e.fitter, Device: e.device, Significance: e.plan.Significance()}
}
