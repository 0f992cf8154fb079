package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// Entry is the audit of one concept set for one target at one layer
// (package audit): its signals, their combined score against the random
// sets audited as concepts, the calibrated decision, and TCAV before and
// after purification.
type Entry struct {
	Target  string `json:"target"`
	Concept string `json:"concept"`
	Layer   string `json:"layer"`
	// Images is the folder audited, run-relative, when it is not a set
	// under data.root (a poisoned set this run wrote).
	Images     string  `json:"images,omitempty"`
	Suspicious bool    `json:"suspicious"`
	Score      float64 `json:"score"`
	Threshold  float64 `json:"threshold"`
	// FalseAlarmRate is measured: the share of the random sets, each held
	// out and audited as a concept, that the threshold flags.
	FalseAlarmRate float64            `json:"false_alarm_rate"`
	Signals        map[string]float64 `json:"signals"`
	// RandomSignals are the same signals of the random sets audited as
	// concepts, the distribution each signal is read against.
	RandomSignals map[string][]float64 `json:"random_signals"`
	// Plain is TCAV of the set as handed over, against all the run's random
	// sets with the TCAV stage's test (the signals use audit.random_sets of
	// them); Robust is Plain for a set not flagged, and TCAV after the
	// purification that moved the score most for a flagged one (RobustBy).
	Plain    tcav.SetScore `json:"plain"`
	Robust   tcav.SetScore `json:"robust"`
	RobustBy string        `json:"robust_by"`
	// Purified is the TCAV score after each purification.
	Purified map[string]float64 `json:"purified"`
	// MostShifted are the images that move most under the purifications,
	// the most suspicious first.
	MostShifted []string `json:"most_shifted"`
}

// Spec is one audit, resolved from audit.* of the config.
type Spec struct {
	Subjects []Subject
	Targets  []tcav.Target
	Layers   []string
	// Randoms are the run's random sets: the first Calibrating are audited
	// as concepts; a set's signals use RandomSets of the others, its
	// verdicts all of them.
	Randoms              []activations.Set
	Calibrating          int
	RandomSets           int
	FalseAlarm, MinScore float64
	Method               cav.Method
}

// Subject is one set the audit looks at.
type Subject struct {
	Set activations.Set
	// Images is the run-relative folder of a poisoned set of this run, Root
	// what the entry's image names are relative to.
	Images, Root string
}

// Extractor is what the audit needs of the activations.
type Extractor interface {
	Extract(set activations.Set, layers []string) (map[string]*activations.Activations, error)
	ClassGradients(set activations.Set, layer string, class int) (*activations.Activations, error)
}

// Stage is what the audit runs with; its temporary purified sets go under Dir.
type Stage struct {
	Extract Extractor
	Judge   tcav.Judge
	Dir     string
	Log     *logrus.Logger
}

// setAudit is what auditing one set gives for one target at one layer.
type setAudit struct {
	signals Signals
	plain   tcav.SetScore
	// strongest is TCAV after the purification that moved the score most.
	strongest   tcav.SetScore
	strongestBy string
	purified    map[string]float64 // TCAV score after each purification
	shifts      []float64          // per image, in file order
}

// auditNeighbours is how many random sets make the pool of natural images
// the neighbour signal measures distances to, and k.
const auditNeighbours, auditK = 3, 5

// mostShifted is how many images an entry names as the most suspicious.
const mostShifted = 5

// Run audits every subject for every target at every layer: the first
// spec.Calibrating random sets are audited as if they were concepts (the
// calibration a set's signals are read against), then each subject.
func (st *Stage) Run(spec Spec) ([]Entry, error) {
	calibration := map[[2]string][]Signals{}
	for _, r := range spec.Randoms[:spec.Calibrating] {
		res, err := st.auditSet(spec, r, false)
		if err != nil {
			return nil, fmt.Errorf("audit: random set %s: %w", r.Name, err)
		}
		for k, v := range res {
			calibration[k] = append(calibration[k], v.signals)
		}
	}
	calibrated := map[[2]string]Calibration{}
	for k, sigs := range calibration {
		calibrated[k] = Calibrate(sigs, spec.FalseAlarm, spec.MinScore)
	}
	var out []Entry
	for _, s := range spec.Subjects {
		res, err := st.auditSet(spec, s.Set, true)
		if err != nil {
			return nil, fmt.Errorf("audit: %s: %w", s.Set.Name, err)
		}
		for _, tg := range spec.Targets {
			t := tg.Name
			for _, l := range spec.Layers {
				k := [2]string{t, l}
				r, c := res[k], calibrated[k]
				score := Score(r.signals, calibration[k])
				// Robust TCAV: a set the audit does not flag is scored as
				// handed over; a flagged one after the purification that
				// moved its score most, the one that undid the tampering.
				robust, robustBy := r.plain, "none (not flagged)"
				if score > c.Threshold {
					robust, robustBy = r.strongest, r.strongestBy
				}
				entry := Entry{Target: t, Concept: s.Set.Name, Layer: l, Images: s.Images,
					Suspicious: score > c.Threshold, Score: score, Threshold: c.Threshold, FalseAlarmRate: c.FalseAlarmRate,
					Signals: r.signals, RandomSignals: map[string][]float64{}, Plain: r.plain, Robust: robust,
					RobustBy: robustBy, Purified: r.purified, MostShifted: mostShiftedOf(s, r.shifts)}
				for _, sig := range calibration[k] {
					for name, v := range sig {
						entry.RandomSignals[name] = append(entry.RandomSignals[name], v)
					}
				}
				verdict := "not suspicious"
				if entry.Suspicious {
					verdict = "SUSPICIOUS"
				}
				st.Log.WithField("audit", s.Set.Name).Infof("%s→%s at %s: %s, score %.2f (threshold %.2f, false alarms %.0f%% of %d random sets); "+
					"TCAV %.3f, robust %.3f (%s)", s.Set.Name, t, l, verdict, score, c.Threshold, 100*c.FalseAlarmRate,
					len(calibration[k]), r.plain.Mean, robust.Mean, robustBy)
				out = append(out, entry)
			}
		}
	}
	return out, nil
}

// auditSet audits one set at every layer for every target: its CAVs and
// TCAV scores against random sets other than itself, before and after each
// purification, and how far its images move. With verdicts, plain and
// strongest are TCAV results against all the run's random sets, as the
// TCAV stage scores (the signals' few random sets cannot reach a small
// p-value under the calibrated test).
func (st *Stage) auditSet(spec Spec, s activations.Set, verdicts bool) (map[[2]string]setAudit, error) {
	layers := spec.Layers
	var refs []activations.Set
	for _, r := range spec.Randoms {
		if r.Name != s.Name && len(refs) < spec.RandomSets {
			refs = append(refs, r)
		}
	}
	dir, err := os.MkdirTemp(st.Dir, ".audit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	purs := Purifications()
	views := []activations.Set{s}
	for _, p := range purs {
		files, err := Write(s.Files, filepath.Join(dir, p.Name), p)
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
		if acts[i], err = st.Extract.Extract(v, layers); err != nil {
			return nil, err
		}
	}
	refActs := make([]map[string]*activations.Activations, len(refs))
	for i, r := range refs {
		if refActs[i], err = st.Extract.Extract(r, layers); err != nil {
			return nil, err
		}
	}
	var all []activations.Set
	for _, r := range spec.Randoms {
		if r.Name != s.Name && verdicts {
			all = append(all, r)
		}
	}
	allActs := make([]map[string]*activations.Activations, len(all))
	for i, r := range all {
		if allActs[i], err = st.Extract.Extract(r, layers); err != nil {
			return nil, err
		}
	}
	m := spec.Method
	out := map[[2]string]setAudit{}
	for _, l := range layers {
		orig := acts[0][l]
		randoms := make([]*activations.Activations, len(refs))
		for i := range refs {
			randoms[i] = refActs[i][l]
		}
		seen := make([]*activations.Activations, len(views)) // each view of the set
		for v := range views {
			seen[v] = acts[v][l]
		}
		cavs, err := st.Judge.Fitter.Against(seen, randoms, m)
		if err != nil {
			return nil, err
		}
		signals := Signals{}
		shifts := make([]float64, orig.N)
		var pool []float32
		poolN := 0
		for _, r := range randoms[:min(auditNeighbours, len(randoms))] {
			pool = append(pool, r.Data...)
			poolN += r.N
		}
		near := NeighbourDistance(orig.Data, orig.N, pool, poolN, auditK)
		var turn, nearPurified, coherence float64
		for v := 1; v < len(views); v++ {
			coherence = max(coherence, Coherence(orig.Data, acts[v][l].Data, orig.N))
			var cos float64
			for r := range randoms {
				cos += Cosine(cavs[0][r].Vector, cavs[v][r].Vector) / float64(len(randoms))
			}
			turn = max(turn, 1-cos)
			for i, x := range Shifts(orig.Data, acts[v][l].Data, orig.N) {
				shifts[i] += x / float64(len(views)-1)
			}
			nearPurified += NeighbourDistance(acts[v][l].Data, orig.N, pool, poolN, auditK) / float64(len(views)-1)
		}
		signals[CAVTurn] = turn
		signals[ResidualCoherence] = coherence
		signals[ActivationShift] = meanOf(shifts)
		if near > 0 {
			signals[NeighbourGap] = abs(near-nearPurified) / near
		}
		for _, tg := range spec.Targets {
			t := tg.Name
			grads, err := st.Extract.ClassGradients(tg.Images, l, tg.Class)
			if err != nil {
				return nil, err
			}
			// Scored as the attack stage judges a set: the TCAV stage's
			// scoring, over the audit's random sets.
			plain, err := st.Judge.Score(t, orig, randoms, grads, m)
			if err != nil {
				return nil, err
			}
			var scores []tcav.SetScore
			purified := map[string]float64{}
			shift, shiftT, most := 0.0, 0.0, 0
			for v := 1; v < len(views); v++ {
				sc, err := st.Judge.Score(t, acts[v][l], randoms, grads, m)
				if err != nil {
					return nil, err
				}
				scores = append(scores, sc)
				purified[purs[v-1].Name] = sc.Mean
				if abs(sc.Mean-plain.Mean) > shift {
					shift, most = abs(sc.Mean-plain.Mean), v-1
				}
				shiftT = max(shiftT, ShiftT(plain.Mean, plain.Std, sc.Mean, sc.Std, len(randoms)))
			}
			sig := Signals{TCAVShift: shift, TCAVShiftT: shiftT}
			alignmentSignals(sig, cavs, grads)
			for k, v := range signals {
				sig[k] = v
			}
			if verdicts {
				every := make([]*activations.Activations, len(all))
				for i := range all {
					every[i] = allActs[i][l]
				}
				if plain, err = st.Judge.Score(t, orig, every, grads, m); err != nil {
					return nil, err
				}
				if scores[most], err = st.Judge.Score(t, acts[most+1][l], every, grads, m); err != nil {
					return nil, err
				}
			}
			out[[2]string{t, l}] = setAudit{signals: sig, plain: plain, strongest: scores[most], strongestBy: purs[most].Name,
				purified: purified, shifts: shifts}
		}
	}
	for v := range views {
		for _, l := range layers {
			st.Judge.Fitter.Release(acts[v][l])
		}
	}
	return out, nil
}

// mostShiftedOf names the images that move most under purification,
// relative to the subject's root.
func mostShiftedOf(s Subject, shifts []float64) []string {
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
	root := s.Root
	var out []string
	for _, i := range idx[:min(mostShifted, len(idx))] {
		rel, err := filepath.Rel(root, s.Set.Files[i])
		if err != nil {
			rel = s.Set.Files[i]
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
func alignmentSignals(sig Signals, cavs [][]*cav.CAV, grads *activations.Activations) {
	align := func(v int) (float64, float64) {
		xs := make([]float64, len(cavs[v]))
		for r, c := range cavs[v] {
			xs[r] = Alignment(grads.Data, grads.N, c.Vector)
		}
		return stats.Mean(xs), stats.StdDev(xs)
	}
	m, s := align(0)
	var shift, shiftT float64
	for v := 1; v < len(cavs); v++ {
		mp, sp := align(v)
		shift = max(shift, abs(mp-m))
		shiftT = max(shiftT, AlignmentShiftTValue(m, s, mp, sp, len(cavs[v])))
	}
	sig[GradientAlignment], sig[AlignmentShift], sig[AlignmentShiftT] = m, shift, shiftT
}
