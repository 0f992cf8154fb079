package run

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// audit runs the audit stage: each random set audited as if it were a
// concept (the calibration), then every audited set.
func (e *experiment) audit() error {
	ac := e.cfg.Audit
	if !ac.Enabled {
		return nil
	}
	targets, layers := e.auditTargets(), e.cfg.TCAV.Layers
	if len(layers) == 0 {
		for _, a := range e.cfg.Attack {
			if !slices.Contains(layers, a.Layer) {
				layers = append(layers, a.Layer)
			}
		}
	}
	subjects, err := e.auditSubjects()
	if err != nil {
		return err
	}
	randoms := e.cfg.TCAV.Random.Sets
	if ac.RandomSets != 8 || len(randoms)-1 < 8 {
		e.log.Infof("audit: CAVs against %d random sets per audited set", min(ac.RandomSets, len(randoms)-1))
	}
	calibrating := randoms[:min(len(randoms), ac.CalibrationSets)]
	e.log.Infof("audit: %d sets, calibrated on %d random sets audited as concepts (audit.calibration_sets %d, of %d)",
		len(subjects), len(calibrating), ac.CalibrationSets, len(randoms))
	spec := audit.Spec{Subjects: subjects, Layers: layers, Randoms: make([]activations.Set, len(randoms)), Calibrating: len(calibrating),
		RandomSets: ac.RandomSets, FalseAlarm: ac.FalseAlarm, MinScore: ac.MinScore, Method: e.method}
	for i, r := range randoms {
		spec.Randoms[i] = e.sets[r]
	}
	for _, t := range targets {
		class, err := e.classIndex(t)
		if err != nil {
			return err
		}
		spec.Targets = append(spec.Targets, tcav.Target{Name: t, Class: class, Images: e.sets[e.classSet(t)]})
	}
	st := &audit.Stage{Extract: e.extract, Judge: e.judge(), Dir: e.dir, Log: e.log}
	entries, err := st.Run(spec)
	e.results.Audit = append(e.results.Audit, entries...)
	return err
}

// auditTargets are the TCAV targets, or the attacked classes without them.
func (e *experiment) auditTargets() []string {
	if len(e.cfg.TCAV.Targets) > 0 {
		return e.cfg.TCAV.Targets
	}
	var out []string
	for _, a := range e.cfg.Attack {
		if !slices.Contains(out, a.Target) {
			out = append(out, a.Target)
		}
	}
	return out
}

// auditSubjects are audit.concepts (default tcav.concepts) and the poisoned
// sets this run wrote.
func (e *experiment) auditSubjects() ([]audit.Subject, error) {
	names := e.cfg.Audit.Concepts
	if len(names) == 0 {
		names = e.cfg.TCAV.Concepts
	}
	var out []audit.Subject
	for _, n := range names {
		s, err := e.imageSet(n)
		if err != nil {
			return nil, fmt.Errorf("audit.concepts: %w", err)
		}
		out = append(out, audit.Subject{Set: s, Root: e.cfg.Data.Root})
	}
	if !e.cfg.Audit.Attacked {
		return out, nil
	}
	for _, a := range e.results.Attack {
		rel := strings.TrimSuffix(a.Images, "/")
		files, err := images.ListSet(e.dir, rel, false, e.log)
		if err != nil {
			return nil, err
		}
		hash, err := images.ListHash(e.dir, files)
		if err != nil {
			return nil, err
		}
		out = append(out, audit.Subject{Set: activations.Set{Name: filepath.Base(rel), Files: files, Hash: hash}, Images: a.Images, Root: e.dir})
	}
	return out, nil
}
