// Package stats holds the statistics behind TCAV significance: summary
// statistics of score lists, Student t-tests, the calibrated rank test, the
// decision that says whether a concept's scores differ from the random
// baseline and on which side, and binomial intervals for measured rates.
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
	// Calibrated ranks the concept's mean score among the mean scores of
	// the random sets, each scored as if it were a concept (see RankTest).
	Calibrated Method = "calibrated"
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
	Significant bool // PValue < the threshold (≤ for Calibrated, whose p-values are exact ranks)
	// Direction compares the mean concept score with the mean
	// random-vs-random score (with the centre of the null for Calibrated).
	// A two-sided test also flags concepts far below the baseline; those
	// must not be read as important.
	Direction Direction
	// Resolution is set when no outcome could be significant at the
	// threshold: a Calibrated test with too few random sets.
	Resolution string
	// Needed is how many random sets the Calibrated test needs to reach the
	// threshold; 0 for the t-tests.
	Needed int
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
		return Significance{}, fmt.Errorf("significance: unknown t-test %q (want %q or %q; %q is RankSignificance)", method, TwoSample, OneSample, Calibrated)
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

// RankTest is the calibrated test's p-value: where the concept's statistic
// obs falls among the null statistics, the same statistic computed for each
// random set scored as if it were a concept. Under the null hypothesis that
// the concept set is one more draw of random images, obs and the R null
// values are exchangeable, so
//
//	p = #{x ∈ null ∪ {obs} : |x − c| ≥ |obs − c|} / (R + 1)
//
// with c the mean of all R+1 values (a symmetric function of them, which
// keeps the exchangeability) satisfies P(p ≤ α) ≤ α exactly; ties count
// against the concept. The smallest attainable p is 1/(R+1). It is
// two-sided; Direction says on which side of c obs lies.
func RankTest(obs float64, null []float64) (p, centre float64, err error) {
	if len(null) == 0 {
		return 0, 0, errors.New("rank test: no null values")
	}
	if err := finite(append([]float64{obs}, null...)); err != nil {
		return 0, 0, fmt.Errorf("rank test: %w", err)
	}
	centre = Mean(append([]float64{obs}, null...))
	d := math.Abs(obs - centre)
	// Scores are fractions of a few class images averaged over sets: equal
	// distances may differ in the last bits, which must still count as ties.
	tol := 1e-9 * math.Max(1, d)
	count := 1
	for _, x := range null {
		if math.Abs(x-centre) >= d-tol {
			count++
		}
	}
	return float64(count) / float64(len(null)+1), centre, nil
}

// MinRankP is the smallest p-value RankTest can give with r random sets.
func MinRankP(r int) float64 { return 1 / float64(r+1) }

// RandomSetsNeeded is the fewest random sets with which RankTest can reach
// threshold: r + 1 ≥ 1/threshold.
func RandomSetsNeeded(threshold float64) int {
	if threshold <= 0 || threshold >= 1 {
		return 0
	}
	return int(math.Ceil(1/threshold*(1-1e-12))) - 1
}

// Reachable reports whether p ≤ threshold is possible with r random sets.
func Reachable(r int, threshold float64) bool { return r >= RandomSetsNeeded(threshold) }

// Resolution is what a calibrated result says when r random sets cannot
// reach the threshold.
func Resolution(r int) string {
	return fmt.Sprintf("cannot reach alpha with %d random sets", r)
}

// RankSignificance decides the calibrated test for one concept: obs is its
// statistic, null the random sets' ones, threshold the per-test alpha. With
// too few random sets for the threshold it is never significant and says so.
func RankSignificance(obs float64, null []float64, threshold float64) (Significance, error) {
	p, centre, err := RankTest(obs, null)
	if err != nil {
		return Significance{}, fmt.Errorf("significance: %w", err)
	}
	dir := Above
	if obs < centre {
		dir = Below
	}
	s := Significance{PValue: p, Direction: dir, Needed: RandomSetsNeeded(threshold)}
	if !Reachable(len(null), threshold) {
		s.Resolution = Resolution(len(null))
		return s, nil
	}
	// The rank p-value is exact, so p ≤ α keeps the false-alarm rate at α;
	// the tolerance absorbs 1/20 ≠ 0.05 in floating point.
	s.Significant = p <= threshold*(1+1e-12)
	return s, nil
}

// Interval is a two-sided confidence interval for a proportion.
type Interval struct{ Lo, Hi float64 }

// ClopperPearson is the exact binomial confidence interval, at level 1 − a,
// for k successes in n trials: the Beta quantiles
// Lo = B(a/2; k, n−k+1), Hi = B(1−a/2; k+1, n−k).
func ClopperPearson(k, n int, a float64) Interval {
	if n <= 0 {
		return Interval{0, 1}
	}
	iv := Interval{0, 1}
	if k > 0 {
		iv.Lo = distuv.Beta{Alpha: float64(k), Beta: float64(n - k + 1)}.Quantile(a / 2)
	}
	if k < n {
		iv.Hi = distuv.Beta{Alpha: float64(k + 1), Beta: float64(n - k)}.Quantile(1 - a/2)
	}
	return iv
}
