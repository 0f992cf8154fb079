// Package tcav is the "score" stage: the directional derivatives of a class
// logit along CAVs, TCAV scores, the random baseline and its significance.
package tcav

import (
	"fmt"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/stats"
)

// Sensitivities returns S(x) = ∇h_k(f_l(x))·v for every class image (a row
// of grads) and every CAV: one matrix product on the device. Result [cav][image].
func Sensitivities(device string, grads *activations.Activations, cavs []*cav.CAV) ([][]float64, error) {
	if len(cavs) == 0 {
		return nil, nil
	}
	d := grads.Dim()
	vs := make([]float32, 0, len(cavs)*d)
	for _, c := range cavs {
		if len(c.Vector) != d {
			return nil, fmt.Errorf("CAV %s/%s at %s has %d features, gradients %d", c.Concept, c.Random, c.Layer, len(c.Vector), d)
		}
		vs = append(vs, c.Vector...)
	}
	s := torch.NewScope()
	defer s.Close()
	g := s.FromFloat32(grads.Data, []int64{int64(grads.N), int64(d)}, device)
	v := s.FromFloat32(vs, []int64{int64(len(cavs)), int64(d)}, device)
	prod := s.MM(v, s.Transpose(g, 0, 1)) // [cavs, N]
	if err := s.Err(); err != nil {
		return nil, err
	}
	flat, err := prod.Float32s()
	if err != nil {
		return nil, err
	}
	out := make([][]float64, len(cavs))
	for i := range out {
		out[i] = make([]float64, grads.N)
		for j := range out[i] {
			out[i][j] = float64(flat[i*grads.N+j])
		}
	}
	return out, nil
}

// Score is the TCAV score (share of S > 0) and magnitude (mean S).
func Score(sens []float64) (score, magnitude float64) {
	pos, sum := 0, 0.0
	for _, v := range sens {
		if v > 0 {
			pos++
		}
		sum += v
	}
	n := float64(max(len(sens), 1))
	return float64(pos) / n, sum / n
}

// Layer is what scoring one target at one layer needs: the class gradients,
// every concept's CAVs against the random sets (same order as Randoms), and
// the random-vs-random CAVs: Baseline[i] is random i against random i+1.
type Layer struct {
	Target, Layer string
	Grads         *activations.Activations
	Randoms       []string
	Concepts      []string
	CAVs          map[string][]*cav.CAV
	Baseline      []*cav.CAV
}

// Significance is how concept scores are tested against the baseline.
type Significance struct {
	Method     stats.Method
	Alpha      float64
	Bonferroni bool
	// Tests is how many concepts the Bonferroni correction counts; 0 means
	// the concepts of the Layer being scored.
	Tests int
}

// Entries scores every concept of l and tests it against the random baseline.
func Entries(device string, l Layer, sig Significance) ([]report.TCAVEntry, error) {
	all := append([]*cav.CAV(nil), l.Baseline...)
	for _, c := range l.Concepts {
		all = append(all, l.CAVs[c]...)
	}
	sens, err := Sensitivities(device, l.Grads, all)
	if err != nil {
		return nil, fmt.Errorf("target %s, layer %s: %w", l.Target, l.Layer, err)
	}
	randomScores := make([]float64, len(l.Baseline))
	for i := range l.Baseline {
		randomScores[i], _ = Score(sens[i])
	}
	threshold := sig.Alpha
	if sig.Bonferroni {
		tests := sig.Tests
		if tests == 0 {
			tests = len(l.Concepts)
		}
		threshold = stats.BonferroniAlpha(sig.Alpha, tests)
	}
	var out []report.TCAVEntry
	k := len(l.Baseline)
	for _, c := range l.Concepts {
		e := report.TCAVEntry{Target: l.Target, Concept: c, Layer: l.Layer, RandomSets: l.Randoms,
			RandomScores: randomScores}
		for _, v := range l.CAVs[c] {
			score, mag := Score(sens[k])
			k++
			e.Scores = append(e.Scores, score)
			e.Magnitudes = append(e.Magnitudes, mag)
			e.CAVAccuracy = append(e.CAVAccuracy, v.Accuracy)
		}
		if err := e.Summarize(sig.Method, threshold); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
