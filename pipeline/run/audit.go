package run

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/stats"
)

// auditSubject is one set the audit looks at.
type auditSubject struct {
	set    activations.Set
	images string // run-relative folder, for a poisoned set of this run
}

// setAudit is what auditing one set gives for one target at one layer.
type setAudit struct {
	signals audit.Signals
	plain   report.AttackScore
	// strongest is TCAV after the purification that moved the score most.
	strongest   report.AttackScore
	strongestBy string
	purified    map[string]float64 // TCAV score after each purification
	shifts      []float64          // per image, in file order
}

// auditNeighbours is how many random sets make the pool of natural images
// the neighbour signal measures distances to, and k.
const auditNeighbours, auditK = 3, 5

// mostShifted is how many images an entry names as the most suspicious.
const mostShifted = 5

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
	calibration := map[[2]string][]audit.Signals{}
	for _, r := range calibrating {
		res, err := e.auditSet(e.sets[r], layers, targets, false)
		if err != nil {
			return fmt.Errorf("audit: random set %s: %w", r, err)
		}
		for k, v := range res {
			calibration[k] = append(calibration[k], v.signals)
		}
	}
	calibrated := map[[2]string]audit.Calibration{}
	for k, sigs := range calibration {
		calibrated[k] = audit.Calibrate(sigs, ac.FalseAlarm, ac.MinScore)
	}
	for _, s := range subjects {
		res, err := e.auditSet(s.set, layers, targets, true)
		if err != nil {
			return fmt.Errorf("audit: %s: %w", s.set.Name, err)
		}
		for _, t := range targets {
			for _, l := range layers {
				k := [2]string{t, l}
				r, c := res[k], calibrated[k]
				score := audit.Score(r.signals, calibration[k])
				// Robust TCAV: a set the audit does not flag is scored as
				// handed over; a flagged one after the purification that
				// moved its score most, the one that undid the tampering.
				robust, robustBy := r.plain, "none (not flagged)"
				if score > c.Threshold {
					robust, robustBy = r.strongest, r.strongestBy
				}
				entry := report.AuditEntry{Target: t, Concept: s.set.Name, Layer: l, Images: s.images,
					Suspicious: score > c.Threshold, Score: score, Threshold: c.Threshold, FalseAlarmRate: c.FalseAlarmRate,
					Signals: r.signals, RandomSignals: map[string][]float64{}, Plain: r.plain, Robust: robust,
					RobustBy: robustBy, Purified: r.purified, MostShifted: e.mostShifted(s, r.shifts)}
				for _, sig := range calibration[k] {
					for name, v := range sig {
						entry.RandomSignals[name] = append(entry.RandomSignals[name], v)
					}
				}
				verdict := "not suspicious"
				if entry.Suspicious {
					verdict = "SUSPICIOUS"
				}
				e.log.WithField("audit", s.set.Name).Infof("%s→%s at %s: %s, score %.2f (threshold %.2f, false alarms %.0f%% of %d random sets); "+
					"TCAV %.3f, robust %.3f (%s)", s.set.Name, t, l, verdict, score, c.Threshold, 100*c.FalseAlarmRate,
					len(calibration[k]), r.plain.Mean, robust.Mean, robustBy)
				e.results.Audit = append(e.results.Audit, entry)
			}
		}
	}
	return nil
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
func (e *experiment) auditSubjects() ([]auditSubject, error) {
	names := e.cfg.Audit.Concepts
	if len(names) == 0 {
		names = e.cfg.TCAV.Concepts
	}
	var out []auditSubject
	for _, n := range names {
		s, err := e.imageSet(n)
		if err != nil {
			return nil, fmt.Errorf("audit.concepts: %w", err)
		}
		out = append(out, auditSubject{set: s})
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
		out = append(out, auditSubject{set: activations.Set{Name: filepath.Base(rel), Files: files, Hash: hash}, images: a.Images})
	}
	return out, nil
}

// auditSet audits one set at every layer for every target: its CAVs and
// TCAV scores against random sets other than itself, before and after each
// purification, and how far its images move. With verdicts, plain and
// strongest are TCAV results against all the run's random sets, as the
// TCAV stage scores (the signals' few random sets cannot reach a small
// p-value under the calibrated test).
func (e *experiment) auditSet(s activations.Set, layers, targets []string, verdicts bool) (map[[2]string]setAudit, error) {
	var refs []string
	for _, r := range e.cfg.TCAV.Random.Sets {
		if r != s.Name && len(refs) < e.cfg.Audit.RandomSets {
			refs = append(refs, r)
		}
	}
	dir, err := os.MkdirTemp(e.dir, ".audit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	purs := audit.Purifications()
	views := []activations.Set{s}
	for _, p := range purs {
		files, err := audit.Write(s.Files, filepath.Join(dir, p.Name), p)
		if err != nil {
			return nil, err
		}
		hash, err := images.ListHash(dir, files)
		if err != nil {
			return nil, err
		}
		views = append(views, activations.Set{Name: s.Name + "~" + p.Name, Files: files, Hash: hash})
	}
	acts := make([]map[string]*activations.Activations, len(views))
	for i, v := range views {
		if acts[i], err = e.extract.Extract(v, layers); err != nil {
			return nil, err
		}
	}
	refActs := make([]map[string]*activations.Activations, len(refs))
	for i, r := range refs {
		if refActs[i], err = e.extract.Extract(e.sets[r], layers); err != nil {
			return nil, err
		}
	}
	var all []string
	for _, r := range e.cfg.TCAV.Random.Sets {
		if r != s.Name && verdicts {
			all = append(all, r)
		}
	}
	allActs := make([]map[string]*activations.Activations, len(all))
	for i, r := range all {
		if allActs[i], err = e.extract.Extract(e.sets[r], layers); err != nil {
			return nil, err
		}
	}
	st := e.method
	out := map[[2]string]setAudit{}
	for _, l := range layers {
		orig := acts[0][l]
		randoms := make([]*activations.Activations, len(refs))
		for i := range refs {
			randoms[i] = refActs[i][l]
		}
		cavs := make([][]*cav.CAV, len(views))
		for v := range views {
			for _, r := range randoms {
				c, err := e.fitter.Fit(acts[v][l], r, st)
				if err != nil {
					return nil, err
				}
				cavs[v] = append(cavs[v], c)
			}
		}
		signals := audit.Signals{}
		shifts := make([]float64, orig.N)
		var pool []float32
		poolN := 0
		for _, r := range randoms[:min(auditNeighbours, len(randoms))] {
			pool = append(pool, r.Data...)
			poolN += r.N
		}
		near := audit.NeighbourDistance(orig.Data, orig.N, pool, poolN, auditK)
		var turn, nearPurified, coherence float64
		for v := 1; v < len(views); v++ {
			coherence = max(coherence, audit.Coherence(orig.Data, acts[v][l].Data, orig.N))
			var cos float64
			for r := range randoms {
				cos += audit.Cosine(cavs[0][r].Vector, cavs[v][r].Vector) / float64(len(randoms))
			}
			turn = max(turn, 1-cos)
			for i, x := range audit.Shifts(orig.Data, acts[v][l].Data, orig.N) {
				shifts[i] += x / float64(len(views)-1)
			}
			nearPurified += audit.NeighbourDistance(acts[v][l].Data, orig.N, pool, poolN, auditK) / float64(len(views)-1)
		}
		signals[audit.CAVTurn] = turn
		signals[audit.ResidualCoherence] = coherence
		signals[audit.ActivationShift] = meanOf(shifts)
		if near > 0 {
			signals[audit.NeighbourGap] = abs(near-nearPurified) / near
		}
		for _, t := range targets {
			class, err := e.classIndex(t)
			if err != nil {
				return nil, err
			}
			grads, err := e.extract.ClassGradients(e.sets[e.classSet(t)], l, class)
			if err != nil {
				return nil, err
			}
			// Scored as the attack stage judges a set: the TCAV stage's
			// scoring, over the audit's random sets.
			as := config.Attack{Concept: s.Name, Target: t, Layer: l}
			plain, err := e.judge().Score(as.Target, orig, randoms, grads, st)
			if err != nil {
				return nil, err
			}
			var scores []report.AttackScore
			purified := map[string]float64{}
			shift, shiftT, most := 0.0, 0.0, 0
			for v := 1; v < len(views); v++ {
				sc, err := e.judge().Score(as.Target, acts[v][l], randoms, grads, st)
				if err != nil {
					return nil, err
				}
				scores = append(scores, sc)
				purified[purs[v-1].Name] = sc.Mean
				if abs(sc.Mean-plain.Mean) > shift {
					shift, most = abs(sc.Mean-plain.Mean), v-1
				}
				shiftT = max(shiftT, audit.ShiftT(plain.Mean, plain.Std, sc.Mean, sc.Std, len(randoms)))
			}
			sig := audit.Signals{audit.TCAVShift: shift, audit.TCAVShiftT: shiftT}
			alignmentSignals(sig, cavs, grads)
			for k, v := range signals {
				sig[k] = v
			}
			if verdicts {
				every := make([]*activations.Activations, len(all))
				for i := range all {
					every[i] = allActs[i][l]
				}
				if plain, err = e.judge().Score(as.Target, orig, every, grads, st); err != nil {
					return nil, err
				}
				if scores[most], err = e.judge().Score(as.Target, acts[most+1][l], every, grads, st); err != nil {
					return nil, err
				}
			}
			out[[2]string{t, l}] = setAudit{signals: sig, plain: plain, strongest: scores[most], strongestBy: purs[most].Name,
				purified: purified, shifts: shifts}
		}
	}
	for v := range views {
		for _, l := range layers {
			e.fitter.Release(acts[v][l])
		}
	}
	return out, nil
}

// mostShifted names the images that move most under purification, relative
// to the data root or to the run directory.
func (e *experiment) mostShifted(s auditSubject, shifts []float64) []string {
	idx := make([]int, len(shifts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case shifts[a] > shifts[b]:
			return -1
		case shifts[a] < shifts[b]:
			return 1
		}
		return 0
	})
	root := e.cfg.Data.Root
	if s.images != "" {
		root = e.dir
	}
	var out []string
	for _, i := range idx[:min(mostShifted, len(idx))] {
		rel, err := filepath.Rel(root, s.set.Files[i])
		if err != nil {
			rel = s.set.Files[i]
		}
		out = append(out, filepath.ToSlash(rel))
	}
	return out
}

func meanOf(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(max(len(xs), 1))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// alignmentSignals adds GradientAlignment and its shift under the
// purifications (views 1…, view 0 the set as handed over), from each
// view's CAVs against the random sets.
func alignmentSignals(sig audit.Signals, cavs [][]*cav.CAV, grads *activations.Activations) {
	align := func(v int) (float64, float64) {
		xs := make([]float64, len(cavs[v]))
		for r, c := range cavs[v] {
			xs[r] = audit.Alignment(grads.Data, grads.N, c.Vector)
		}
		return stats.Mean(xs), stats.StdDev(xs)
	}
	m, s := align(0)
	var shift, shiftT float64
	for v := 1; v < len(cavs); v++ {
		mp, sp := align(v)
		shift = max(shift, abs(mp-m))
		shiftT = max(shiftT, audit.AlignmentShiftTValue(m, s, mp, sp, len(cavs[v])))
	}
	sig[audit.GradientAlignment], sig[audit.AlignmentShift], sig[audit.AlignmentShiftT] = m, shift, shiftT
}
