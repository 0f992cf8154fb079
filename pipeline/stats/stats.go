// Package stats holds the statistics behind TCAV significance: summary
// statistics of score lists, Student t-tests, and the decision that says
// whether a concept's scores differ from the random baseline and on which side.
package stats

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Mean returns the arithmetic mean of xs, or NaN if xs is empty.
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	// Summing deviations from the first value makes the mean of a constant
	// list exactly that constant (a plain sum of 0.7 three times is not
	// 3·0.7), so the zero-variance cases of the t-tests are recognized.
	var sum float64
	for _, x := range xs {
		sum += x - xs[0]
	}
	return xs[0] + sum/float64(len(xs))
}

// StdDev returns the sample standard deviation of xs (denominator n−1, as
// numpy's std(ddof=1)), or NaN if xs has fewer than two values.
func StdDev(xs []float64) float64 {
	if len(xs) < 2 {
		return math.NaN()
	}
	return math.Sqrt(sumSquares(xs, Mean(xs)) / float64(len(xs)-1))
}

func sumSquares(xs []float64, mean float64) float64 {
	var ss float64
	for _, x := range xs {
		d := x - mean
		ss += d * d
	}
	return ss
}

// TTest is the outcome of a Student t-test.
type TTest struct {
	T  float64 // the t statistic; ±Inf when the variance is zero and the means differ
	DF float64 // degrees of freedom
	P  float64 // two-sided p-value
}

// TwoSampleT is Student's t-test between a and b assuming equal variances
// (pooled variance, df = n_a + n_b − 2), two-sided, as scipy's ttest_ind with
// its defaults, which the reference TCAV uses.
//
// When the pooled variance is zero, the t statistic is 0/0 or x/0: identical
// constant lists give T = 0 and P = 1, constant lists with different values
// give T = ±Inf and P = 0. (scipy returns NaN for both.)
//
// It needs at least one value in each list and three in all.
func TwoSampleT(a, b []float64) (TTest, error) {
	na, nb := len(a), len(b)
	if na < 1 || nb < 1 || na+nb < 3 {
		return TTest{}, fmt.Errorf("two-sample t-test needs at least 1 value per sample and 3 in all, got %d and %d", na, nb)
	}
	if err := finite(a); err != nil {
		return TTest{}, err
	}
	if err := finite(b); err != nil {
		return TTest{}, err
	}
	ma, mb := Mean(a), Mean(b)
	df := float64(na + nb - 2)
	pooled := (sumSquares(a, ma) + sumSquares(b, mb)) / df
	se := math.Sqrt(pooled * (1/float64(na) + 1/float64(nb)))
	return tTest(ma-mb, se, df), nil
}

// OneSampleT is Student's t-test of the mean of xs against mu, two-sided (the
// TCAV paper tests concept scores against mu = 0.5). When xs has zero
// variance, P is 1 if every value equals mu and 0 otherwise.
//
// It needs at least two values.
func OneSampleT(xs []float64, mu float64) (TTest, error) {
	n := len(xs)
	if n < 2 {
		return TTest{}, fmt.Errorf("one-sample t-test needs at least 2 values, got %d", n)
	}
	if err := finite(xs); err != nil {
		return TTest{}, err
	}
	if math.IsNaN(mu) || math.IsInf(mu, 0) {
		return TTest{}, fmt.Errorf("one-sample t-test against %v", mu)
	}
	se := StdDev(xs) / math.Sqrt(float64(n))
	return tTest(Mean(xs)-mu, se, float64(n-1)), nil
}

// tTest turns a mean difference and its standard error into t and a
// two-sided p-value, with the zero-variance cases settled explicitly.
func tTest(diff, se, df float64) TTest {
	switch {
	case se == 0 && diff == 0:
		return TTest{T: 0, DF: df, P: 1}
	case se == 0:
		return TTest{T: math.Copysign(math.Inf(1), diff), DF: df, P: 0}
	}
	t := diff / se
	// The lower tail is computed directly from the incomplete beta function,
	// so tiny p-values keep their precision (1 − CDF(|t|) would not).
	p := 2 * distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.CDF(-math.Abs(t))
	return TTest{T: t, DF: df, P: math.Min(p, 1)}
}

func finite(xs []float64) error {
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("value %d is %v", i, x)
		}
	}
	return nil
}

// BonferroniAlpha is the per-test threshold that keeps the family-wise error
// rate at alpha over tests tests (in TCAV: the concepts tested for one target
// and layer). Fewer than one test leaves alpha unchanged.
func BonferroniAlpha(alpha float64, tests int) float64 {
	if tests <= 1 {
		return alpha
	}
	return alpha / float64(tests)
}

// Method names a significance test, as spelled in the config.
type Method string

const (
	// TwoSample compares concept scores with random-vs-random scores
	// (the reference implementation).
	TwoSample Method = "two-sample"
	// OneSample compares concept scores with 0.5 (the paper).
	OneSample Method = "one-sample"
)

// Chance is the TCAV score of a direction that carries no information: the
// mean OneSample tests against.
const Chance = 0.5

// Direction says on which side of the random baseline a concept's scores lie.
type Direction string

const (
	Above Direction = "above"
	Below Direction = "below"
)

// Significance is the decision for one concept at one target and layer.
type Significance struct {
	PValue      float64
	Significant bool // PValue < the threshold
	// Direction compares the mean concept score with the mean
	// random-vs-random score. A two-sided test also flags concepts far
	// below the baseline; those must not be read as important.
	Direction Direction
}

// Important reports whether the concept is significantly above the random
// baseline: the only outcome that says the concept matters for the class.
func (s Significance) Important() bool { return s.Significant && s.Direction == Above }

// Test decides whether concept scores differ from the random baseline with
// the given method, at threshold (already Bonferroni-corrected if wanted; see
// BonferroniAlpha). random holds the random-vs-random scores; they set the
// direction for both methods. A concept mean equal to the baseline mean is
// reported as Above; it is then never significant under TwoSample.
func Test(concept, random []float64, method Method, threshold float64) (Significance, error) {
	if len(random) == 0 {
		return Significance{}, errors.New("significance: no random-vs-random scores")
	}
	var (
		tt  TTest
		err error
	)
	switch method {
	case TwoSample:
		tt, err = TwoSampleT(concept, random)
	case OneSample:
		tt, err = OneSampleT(concept, Chance)
	default:
		return Significance{}, fmt.Errorf("significance: unknown test %q (want %q or %q)", method, TwoSample, OneSample)
	}
	if err != nil {
		return Significance{}, fmt.Errorf("significance: %w", err)
	}
	if err := finite(random); err != nil {
		return Significance{}, fmt.Errorf("significance: random scores: %w", err)
	}
	dir := Above
	if Mean(concept) < Mean(random) {
		dir = Below
	}
	return Significance{PValue: tt.P, Significant: tt.P < threshold, Direction: dir}, nil
}
