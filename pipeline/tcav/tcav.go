// Package tcav is the TCAV stage (Run): the directional derivatives of a class
// logit along CAVs, TCAV scores, the random baseline and its significance.
package tcav

import (
	"fmt"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
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

// flippedScore is the TCAV score of the opposite CAV, −v: the share of
// S < 0. The calibrated design scores set B against set A with the CAV of A
// against B turned around, so each pair of sets needs one fit.
func flippedScore(sens []float64) float64 {
	neg := 0
	for _, v := range sens {
		if v < 0 {
			neg++
		}
	}
	return float64(neg) / float64(max(len(sens), 1))
}

// Layer is what scoring one target at one layer needs: the class gradients,
// every concept's CAVs against the random sets (same order as Randoms), the
// random-vs-random CAVs: Baseline[i] is random i against random i+1, and for
// the calibrated test the CAVs of Design.Pairs: Null[[2]int{i, j}] is random
// i against random j.
type Layer struct {
	Target, Layer string
	Grads         *activations.Activations
	Randoms       []string
	Concepts      []string
	CAVs          map[string][]*cav.CAV
	Baseline      []*cav.CAV
	Null          map[[2]int]*cav.CAV
}

// Significance is how concept scores are tested against the baseline.
type Significance struct {
	Method     stats.Method
	Alpha      float64
	Bonferroni bool
	// Tests is how many concepts the Bonferroni correction counts; 0 means
	// the concepts of the Layer being scored.
	Tests int
	// Negatives is how many other sets each set is scored against in the
	// calibrated test's design (see NewDesign); 0 means all.
	Negatives int
}

// Threshold is the per-test alpha for a layer of concepts concepts.
func (sig Significance) Threshold(concepts int) float64 {
	if !sig.Bonferroni {
		return sig.Alpha
	}
	tests := sig.Tests
	if tests == 0 {
		tests = concepts
	}
	return stats.BonferroniAlpha(sig.Alpha, tests)
}

// Entries scores every concept of l and tests it against the random baseline.
func Entries(device string, l Layer, sig Significance) ([]Entry, error) {
	design := NewDesign(len(l.Randoms), sig.Negatives)
	var pairs [][2]int
	all := append([]*cav.CAV(nil), l.Baseline...)
	for _, c := range l.Concepts {
		all = append(all, l.CAVs[c]...)
	}
	if sig.Method == stats.Calibrated {
		pairs = design.Pairs()
		for _, p := range pairs {
			c, ok := l.Null[p]
			if !ok {
				return nil, fmt.Errorf("target %s, layer %s: no CAV of %s against %s for the calibrated test",
					l.Target, l.Layer, l.Randoms[p[0]], l.Randoms[p[1]])
			}
			all = append(all, c)
		}
	}
	sens, err := Sensitivities(device, l.Grads, all)
	if err != nil {
		return nil, fmt.Errorf("target %s, layer %s: %w", l.Target, l.Layer, err)
	}
	randomScores := make([]float64, len(l.Baseline))
	for i := range l.Baseline {
		randomScores[i], _ = Score(sens[i])
	}
	threshold := sig.Threshold(len(l.Concepts))
	var out []Entry
	k := len(l.Baseline)
	conceptSens := map[string][][]float64{}
	for _, c := range l.Concepts {
		e := Entry{Target: l.Target, Concept: c, Layer: l.Layer, RandomSets: l.Randoms,
			RandomScores: randomScores}
		for _, v := range l.CAVs[c] {
			score, mag := Score(sens[k])
			conceptSens[c] = append(conceptSens[c], sens[k])
			k++
			e.Scores = append(e.Scores, score)
			e.Magnitudes = append(e.Magnitudes, mag)
			e.CAVAccuracy = append(e.CAVAccuracy, v.Accuracy)
		}
		out = append(out, e)
	}
	if sig.Method != stats.Calibrated {
		for i := range out {
			if err := out[i].Summarize(sig.Method, threshold); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	pairScore := map[[2]int]float64{}
	for _, p := range pairs {
		pairScore[p], _ = Score(sens[k])
		pairScore[[2]int{p[1], p[0]}] = flippedScore(sens[k])
		k++
	}
	for i := range out {
		e := &out[i]
		if len(e.Scores) != len(l.Randoms) {
			return nil, fmt.Errorf("tcav %s/%s/%s: %d CAVs for %d random sets", e.Target, e.Concept, e.Layer, len(e.Scores), len(l.Randoms))
		}
		obs, null := design.Statistics(e.Scores, conceptSens[e.Concept], pairScore)
		sg, err := stats.RankSignificance(obs, null, threshold)
		if err != nil {
			return nil, fmt.Errorf("tcav %s/%s/%s: %w", e.Target, e.Concept, e.Layer, err)
		}
		_, centre, _ := stats.RankTest(obs, null)
		e.Record(stats.Calibrated, threshold, sg)
		e.Null = &Null{Statistic: obs, Centre: centre, Negatives: design.Negatives(), Means: null}
	}
	return out, nil
}
