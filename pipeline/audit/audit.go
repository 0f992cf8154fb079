package audit

import (
	"math"
	"slices"
	"sort"
)

// Signal names, each higher when a set looks more tampered with.
const (
	// TCAVShift is the largest change of the TCAV score under one
	// purification: max_p |TCAV(p(X)) − TCAV(X)|.
	TCAVShift = "tcav_shift"
	// TCAVShiftT is the same shift in units of its standard error over the
	// random sets, max_p |m_p − m| / √((s_p² + s²)/R): a natural set's
	// scores are either stable or noisy, a poisoned one's are neither.
	TCAVShiftT = "tcav_shift_t"
	// CAVTurn is how far the CAV turns under a purification:
	// max_p (1 − mean over random sets of cos(v_X, v_p(X))).
	CAVTurn = "cav_turn"
	// ActivationShift is how far the images move at the layer under the
	// purifications: the mean over images and purifications of
	// ‖f(x) − f(p(x))‖ / ‖f(x)‖.
	ActivationShift = "activation_shift"
	// NeighbourGap is how much the mean distance to the k nearest random
	// images changes under the purifications, relative to itself: a set
	// pushed off the natural images' manifold returns to it.
	NeighbourGap = "neighbour_gap"
	// GradientAlignment is how well the CAV points along the class
	// gradients: the mean over class images and random sets of
	// cos(∇f_class(x), v_X). A concept the class relies on is extreme here
	// as much as a set promoted by poison.
	GradientAlignment = "gradient_alignment"
	// AlignmentShift is the largest change of GradientAlignment under one
	// purification. Unlike the TCAV score (a share of class images, which
	// saturates at 0 and 1), it moves when a purification undoes part of a
	// perturbation that still leaves every sign as it was.
	AlignmentShift = "alignment_shift"
	// AlignmentShiftT is AlignmentShift in units of its standard error over
	// the random sets.
	AlignmentShiftT = "alignment_shift_t"
	// ResidualCoherence is how much the images' activation changes under a
	// purification point one way: max_p ‖mean_i r_i‖ / mean_i ‖r_i‖, with
	// r_i = f(x_i) − f(p(x_i)). A perturbation shared by the set's images
	// comes off as one direction; natural images' changes scatter.
	ResidualCoherence = "residual_coherence"
)

// Signals are one audited set's values, by name.
type Signals map[string]float64

// Scored are the signals the combined score reads. The others are reported
// but measured not to separate tampering from image content on the demo:
// sharp natural textures (stripes, zigzags) move as much in activation space
// under purification as a poisoned set does (activation shift, neighbour
// gap, residual coherence), every set's CAV turns by about the same angle,
// and a concept the class relies on is as aligned with its gradients as a
// promoted set (see the audit experiments in package run). The alignment
// shift catches promoted sets whose TCAV score stays at 1 after every
// purification.
var Scored = []string{TCAVShift, TCAVShiftT, AlignmentShift, AlignmentShiftT}

// ShiftT is the TCAVShiftT of one purification: scores of mean m and
// standard deviation s over r random sets before, mp and sp after. The
// standard error is floored at minStandardError, so that a set whose
// scores are all 1 does not divide by zero.
func ShiftT(m, s, mp, sp float64, r int) float64 {
	return shiftT(m, s, mp, sp, r, minStandardError)
}

func shiftT(m, s, mp, sp float64, r int, floor float64) float64 {
	se := math.Sqrt((s*s + sp*sp) / float64(max(r, 1)))
	return math.Abs(mp-m) / math.Max(se, floor)
}

// AlignmentShiftTValue is the AlignmentShiftT of one purification:
// alignments of mean m and standard deviation s over r random sets before,
// mp and sp after; the standard error is floored at a thousandth.
func AlignmentShiftTValue(m, s, mp, sp float64, r int) float64 {
	return shiftT(m, s, mp, sp, r, 1e-3)
}

// minStandardError is one class image in a hundred, across random sets.
const minStandardError = 0.01

// minSpread keeps a z-score finite when the random sets agree exactly.
const minSpread = 1e-3

// Score is the combined score of s: the largest of its signals' z-scores
// against the same signals of the reference sets (the random sets audited
// as concepts). A set is as suspicious as its most telling signal.
func Score(s Signals, ref []Signals) float64 { return ScoreWith(s, ref, Scored) }

// ScoreWith is Score over the signals names.
func ScoreWith(s Signals, ref []Signals, names []string) float64 {
	best := math.Inf(-1)
	for _, name := range names {
		v, ok := s[name]
		if !ok {
			continue
		}
		var xs []float64
		for _, r := range ref {
			if x, ok := r[name]; ok {
				xs = append(xs, x)
			}
		}
		if len(xs) < 2 {
			continue
		}
		m, sd := meanStd(xs)
		best = math.Max(best, (v-m)/math.Max(sd, minSpread))
	}
	if math.IsInf(best, -1) {
		return 0
	}
	return best
}

// Calibration is a threshold on the combined score chosen on the random
// sets, and the false-alarm rate it was measured to have.
type Calibration struct {
	Threshold float64
	// FalseAlarmRate is the share of random sets flagged when each is held
	// out: its score against a threshold calibrated on the others.
	FalseAlarmRate float64
	// RandomScores are the random sets' own combined scores, each against
	// the other random sets.
	RandomScores []float64
}

// Calibrate chooses the threshold for false-alarm rate rate: the
// ⌈(1−rate)(n+1)⌉-th smallest of the n random sets' scores (the largest
// when n is too small for rate), and never below floor.
func Calibrate(random []Signals, rate, floor float64) Calibration {
	scores := make([]float64, len(random))
	for i := range random {
		scores[i] = Score(random[i], without(random, i))
	}
	c := Calibration{Threshold: threshold(scores, rate, floor), RandomScores: scores}
	if len(scores) < 2 {
		return c
	}
	flagged := 0
	for i, s := range scores {
		if s > threshold(without(scores, i), rate, floor) {
			flagged++
		}
	}
	c.FalseAlarmRate = float64(flagged) / float64(len(scores))
	return c
}

func threshold(scores []float64, rate, floor float64) float64 {
	if len(scores) == 0 {
		return floor
	}
	s := slices.Clone(scores)
	sort.Float64s(s)
	k := int(math.Ceil((1 - rate) * float64(len(s)+1)))
	k = min(max(k, 1), len(s))
	return math.Max(floor, s[k-1])
}

func without[T any](xs []T, i int) []T {
	return append(append([]T(nil), xs[:i]...), xs[i+1:]...)
}

// AUROC is the probability that a positive's score exceeds a negative's
// (ties count half): 1 separates perfectly, 0.5 is chance.
func AUROC(pos, neg []float64) float64 {
	if len(pos) == 0 || len(neg) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, p := range pos {
		for _, n := range neg {
			switch {
			case p > n:
				sum++
			case p == n:
				sum += 0.5
			}
		}
	}
	return sum / float64(len(pos)*len(neg))
}

// Median is the middle value (the lower of the two middle ones for an even
// count, so that it is always one of the values).
func Median(xs []float64) (value float64, index int) {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return xs[idx[a]] < xs[idx[b]] })
	m := idx[(len(idx)-1)/2]
	return xs[m], m
}

func meanStd(xs []float64) (float64, float64) {
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	if len(xs) > 1 {
		v /= float64(len(xs) - 1)
	}
	return m, math.Sqrt(v)
}

// Cosine is the cosine of the angle between a and b.
func Cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// Shifts are, per image (rows of n×d matrices), ‖a − b‖ / ‖a‖.
func Shifts(a, b []float32, n int) []float64 {
	d := len(a) / max(n, 1)
	out := make([]float64, n)
	for i := range n {
		var diff, norm float64
		for j := i * d; j < (i+1)*d; j++ {
			x := float64(a[j]) - float64(b[j])
			diff += x * x
			norm += float64(a[j]) * float64(a[j])
		}
		if norm > 0 {
			out[i] = math.Sqrt(diff / norm)
		}
	}
	return out
}

// NeighbourDistance is the mean over the n rows of set of the mean
// Euclidean distance to their k nearest rows of pool (m rows).
func NeighbourDistance(set []float32, n int, pool []float32, m, k int) float64 {
	d := len(set) / max(n, 1)
	k = min(k, m)
	var total float64
	dist := make([]float64, m)
	for i := range n {
		x := set[i*d : (i+1)*d]
		for j := range m {
			y := pool[j*d : (j+1)*d]
			var s float64
			for t := range d {
				v := float64(x[t]) - float64(y[t])
				s += v * v
			}
			dist[j] = math.Sqrt(s)
		}
		sort.Float64s(dist)
		var s float64
		for _, v := range dist[:k] {
			s += v
		}
		total += s / float64(k)
	}
	return total / float64(max(n, 1))
}

// Alignment is the mean over the n rows g of grads of cos(g, v).
func Alignment(grads []float32, n int, v []float32) float64 {
	d := len(v)
	var sum float64
	for i := range n {
		sum += Cosine(grads[i*d:(i+1)*d], v)
	}
	return sum / float64(max(n, 1))
}

// Coherence is ‖mean_i r_i‖ / mean_i ‖r_i‖ over the residuals r_i = a_i − b_i
// of rows of two n×d matrices: 1 when every image moved the same way, about
// 1/√n when the moves are independent.
func Coherence(a, b []float32, n int) float64 {
	d := len(a) / max(n, 1)
	mean := make([]float64, d)
	var norms float64
	for i := range n {
		var sq float64
		for j := range d {
			r := float64(a[i*d+j]) - float64(b[i*d+j])
			mean[j] += r / float64(n)
			sq += r * r
		}
		norms += math.Sqrt(sq) / float64(n)
	}
	if norms == 0 {
		return 0
	}
	var sq float64
	for _, v := range mean {
		sq += v * v
	}
	return math.Sqrt(sq) / norms
}
