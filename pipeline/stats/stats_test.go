package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Reference values marked "scipy" were computed once with scipy 1.10.1
// (Debian python3-scipy) as
//
//	scipy.stats.ttest_ind(a, b)        # Student, equal_var=True, two-sided
//	scipy.stats.ttest_1samp(xs, mu)    # two-sided
//	numpy.mean(xs), numpy.std(xs, ddof=1)
//
// printed with "%.17g". Values marked "by hand" are derived in the comment.

func close(got, want, relTol float64) bool {
	if got == want {
		return true
	}
	return math.Abs(got-want) <= relTol*math.Abs(want)
}

var (
	tcavScores   = []float64{0.96, 0.94, 0.91, 0.97, 0.95}
	randomScores = []float64{0.52, 0.41, 0.60, 0.47, 0.55}
)

func TestMeanStdDev(t *testing.T) {
	tests := []struct {
		xs        []float64
		mean, std float64
		source    string
	}{
		{tcavScores, 0.94600000000000006, 0.023021728866442652, "scipy"},
		{[]float64{0.1, 0.12, 0.11, 0.09, 0.1}, 0.10400000000000001, 0.011401754250991379, "scipy"},
		// by hand: mean 3, deviations −1,0,1 → ss 2, /(3−1) → 1.
		{[]float64{2, 3, 4}, 3, 1, "by hand"},
		{[]float64{0.7, 0.7, 0.7}, 0.7, 0, "by hand"},
	}
	for _, tt := range tests {
		if got := Mean(tt.xs); !close(got, tt.mean, 1e-12) {
			t.Errorf("Mean(%v) = %.17g, want %.17g (%s)", tt.xs, got, tt.mean, tt.source)
		}
		if got := StdDev(tt.xs); !close(got, tt.std, 1e-12) {
			t.Errorf("StdDev(%v) = %.17g, want %.17g (%s)", tt.xs, got, tt.std, tt.source)
		}
	}
	if !math.IsNaN(Mean(nil)) {
		t.Error("Mean(nil) is not NaN")
	}
	if !math.IsNaN(StdDev([]float64{1})) {
		t.Error("StdDev of one value is not NaN")
	}
}

func TestTwoSampleT(t *testing.T) {
	tests := []struct {
		name  string
		a, b  []float64
		tStat float64
		p     float64
	}{
		// scipy
		{"concept far above", tcavScores, randomScores, 12.714018188731734, 1.3784841042990252e-06},
		{"overlapping", []float64{0.50, 0.55, 0.48, 0.53}, []float64{0.49, 0.52, 0.51, 0.47, 0.56}, 0.22771001702132437, 0.82637982318660508},
		{"unequal sizes, below", []float64{0.2, 0.25, 0.1}, []float64{0.5, 0.45, 0.6, 0.55, 0.4, 0.52}, -6.2246241610193573, 0.00043471802515164304},
		{"tiny p", []float64{0.99, 0.98, 0.99, 1.0, 0.97}, []float64{0.1, 0.12, 0.11, 0.09, 0.1}, 122.31139326766296, 2.2317567925352613e-14},
		// by hand (scipy gives NaN for a one-value sample): a = [0.9],
		// b = [0.4 0.5 0.6]: ss = 0 + 0.02, df = 2, pooled var 0.01,
		// se = sqrt(0.01·(1 + 1/3)), t = 0.4/se = sqrt(12). For df = 2 the
		// t CDF is 1/2 + t/(2·sqrt(2+t²)), so p = 1 − sqrt(12/14) = 1 − sqrt(6/7).
		{"one value against three", []float64{0.9}, []float64{0.4, 0.5, 0.6}, math.Sqrt(12), 1 - math.Sqrt(6.0/7)},
		// by hand: zero pooled variance.
		{"identical constants", []float64{0.5, 0.5}, []float64{0.5, 0.5, 0.5}, 0, 1},
		{"different constants", []float64{1, 1, 1}, []float64{0.5, 0.5}, math.Inf(1), 0},
		{"different constants, below", []float64{0, 0}, []float64{0.5, 0.5}, math.Inf(-1), 0},
		// Constants whose float sum is inexact (3·0.7 ≠ 2.1) are still constant.
		{"identical inexact constants", []float64{0.7, 0.7, 0.7}, []float64{0.7, 0.7}, 0, 1},
		{"different inexact constants", []float64{0.7, 0.7, 0.7}, []float64{0.3, 0.3, 0.3, 0.3}, math.Inf(1), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TwoSampleT(tt.a, tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if !close(got.T, tt.tStat, 1e-9) {
				t.Errorf("T = %.17g, want %.17g", got.T, tt.tStat)
			}
			if !close(got.P, tt.p, 1e-7) {
				t.Errorf("P = %.17g, want %.17g", got.P, tt.p)
			}
			if want := float64(len(tt.a) + len(tt.b) - 2); got.DF != want {
				t.Errorf("DF = %v, want %v", got.DF, want)
			}
		})
	}
}

func TestTwoSampleTErrors(t *testing.T) {
	tests := []struct {
		name string
		a, b []float64
	}{
		{"empty", nil, []float64{1, 2}},
		{"one each", []float64{1}, []float64{2}},
		{"NaN", []float64{1, math.NaN()}, []float64{1, 2}},
		{"Inf", []float64{1, 2}, []float64{math.Inf(1), 2}},
	}
	for _, tt := range tests {
		if _, err := TwoSampleT(tt.a, tt.b); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestOneSampleT(t *testing.T) {
	tests := []struct {
		name  string
		xs    []float64
		mu    float64
		tStat float64
		p     float64
	}{
		// scipy
		{"above chance", tcavScores, 0.5, 43.319349461134031, 1.6977832718377692e-06},
		{"near chance", []float64{0.45, 0.55, 0.52, 0.49}, 0.5, 0.11704114719612803, 0.9142232834786459},
		{"below chance", []float64{0.1, 0.3, 0.2}, 0.5, -5.1961524227066311, 0.035098718645984649},
		{"other mu", []float64{0.2, 0.4, 0.3, 0.35}, 0.25, 1.4638501094227998, 0.23944259863600284},
		// by hand: zero variance.
		{"constant at mu", []float64{0.5, 0.5, 0.5}, 0.5, 0, 1},
		{"constant off mu", []float64{1, 1, 1}, 0.5, math.Inf(1), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OneSampleT(tt.xs, tt.mu)
			if err != nil {
				t.Fatal(err)
			}
			if !close(got.T, tt.tStat, 1e-9) {
				t.Errorf("T = %.17g, want %.17g", got.T, tt.tStat)
			}
			if !close(got.P, tt.p, 1e-7) {
				t.Errorf("P = %.17g, want %.17g", got.P, tt.p)
			}
			if want := float64(len(tt.xs) - 1); got.DF != want {
				t.Errorf("DF = %v, want %v", got.DF, want)
			}
		})
	}
	if _, err := OneSampleT([]float64{0.5}, 0.5); err == nil {
		t.Error("one value: no error")
	}
	if _, err := OneSampleT([]float64{0.5, 0.6}, math.NaN()); err == nil {
		t.Error("mu NaN: no error")
	}
}

func TestBonferroniAlpha(t *testing.T) {
	tests := []struct {
		alpha float64
		tests int
		want  float64
	}{
		{0.05, 3, 0.05 / 3},
		{0.05, 1, 0.05},
		{0.05, 0, 0.05},
		{0.01, 10, 0.001},
	}
	for _, tt := range tests {
		if got := BonferroniAlpha(tt.alpha, tt.tests); !close(got, tt.want, 1e-15) {
			t.Errorf("BonferroniAlpha(%v, %d) = %v, want %v", tt.alpha, tt.tests, got, tt.want)
		}
	}
}

func TestTest(t *testing.T) {
	below := []float64{0.2, 0.25, 0.1}
	random6 := []float64{0.5, 0.45, 0.6, 0.55, 0.4, 0.52}
	tests := []struct {
		name      string
		concept   []float64
		random    []float64
		method    Method
		threshold float64
		want      Significance
	}{
		{"above, significant", tcavScores, randomScores, TwoSample, 0.05,
			Significance{PValue: 1.3784841042990252e-06, Significant: true, Direction: Above}},
		{"below, significant", below, random6, TwoSample, 0.05,
			Significance{PValue: 0.00043471802515164304, Significant: true, Direction: Below}},
		// p = 4.3e-4 is not below 0.05/200.
		{"below, Bonferroni", below, random6, TwoSample, BonferroniAlpha(0.05, 200),
			Significance{PValue: 0.00043471802515164304, Significant: false, Direction: Below}},
		{"overlapping, not significant", []float64{0.50, 0.55, 0.48, 0.53}, []float64{0.49, 0.52, 0.51, 0.47, 0.56}, TwoSample, 0.05,
			Significance{PValue: 0.82637982318660508, Significant: false, Direction: Above}},
		// One-sample tests against 0.5 while the direction still follows the
		// random baseline (mean 0.2 here).
		{"one-sample", []float64{0.1, 0.3, 0.2}, []float64{0.2}, OneSample, 0.05,
			Significance{PValue: 0.035098718645984649, Significant: true, Direction: Above}},
		{"identical constants", []float64{0.5, 0.5}, []float64{0.5, 0.5}, TwoSample, 0.05,
			Significance{PValue: 1, Significant: false, Direction: Above}},
		{"different constants", []float64{0, 0}, []float64{0.5, 0.5}, TwoSample, 0.05,
			Significance{PValue: 0, Significant: true, Direction: Below}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Test(tt.concept, tt.random, tt.method, tt.threshold)
			if err != nil {
				t.Fatal(err)
			}
			if !close(got.PValue, tt.want.PValue, 1e-7) || got.Significant != tt.want.Significant || got.Direction != tt.want.Direction {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.Important() != (tt.want.Significant && tt.want.Direction == Above) {
				t.Errorf("Important() = %v", got.Important())
			}
		})
	}
}

func TestTestErrors(t *testing.T) {
	if _, err := Test(tcavScores, nil, TwoSample, 0.05); err == nil {
		t.Error("no random scores: no error")
	}
	if _, err := Test(tcavScores, randomScores, "welch", 0.05); err == nil {
		t.Error("unknown method: no error")
	}
	if _, err := Test(tcavScores, []float64{math.NaN(), 0.5}, OneSample, 0.05); err == nil {
		t.Error("NaN random score: no error")
	}
}

func TestRankTestKnownAnswers(t *testing.T) {
	tests := []struct {
		name      string
		obs       float64
		null      []float64
		p, centre float64
	}{
		// by hand: centre (1 + 19·0.5)/20 = 0.525; only obs is 0.475 away.
		{"most extreme of 20", 1, repeat(0.5, 19), 1.0 / 20, 0.525},
		// by hand: centre (0.9+0.9+1.5)/5 = 0.66; the tied 0.9 counts against obs.
		{"tie counts against the concept", 0.9, []float64{0.9, 0.5, 0.5, 0.5}, 2.0 / 5, 0.66},
		// by hand: centre 0.5, obs at it: every value is at least as far.
		{"at the centre", 0.5, []float64{0.4, 0.6, 0.3, 0.7}, 1, 0.5},
		// by hand: far below; centre (0 + 0.5·9)/10 = 0.45.
		{"far below", 0, repeat(0.5, 9), 1.0 / 10, 0.45},
	}
	for _, tt := range tests {
		p, c, err := RankTest(tt.obs, tt.null)
		if err != nil {
			t.Fatal(err)
		}
		if !close(p, tt.p, 1e-12) || !close(c, tt.centre, 1e-12) {
			t.Errorf("%s: p %g, centre %g; want %g and %g", tt.name, p, c, tt.p, tt.centre)
		}
	}
	if _, _, err := RankTest(0.5, nil); err == nil {
		t.Error("no null values: no error")
	}
	if _, _, err := RankTest(math.NaN(), []float64{0.5}); err == nil {
		t.Error("NaN statistic: no error")
	}
}

func repeat(x float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = x
	}
	return out
}

// Under exchangeability the rank p-value is exact: with R = 19 and iid
// statistics, p ≤ 0.05 happens 1 time in 20. A centre taken from the null
// alone, or a strict "<", would drift from that rate.
func TestRankTestIsExactUnderExchangeability(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const trials, R = 20000, 19
	hits := 0
	null := make([]float64, R)
	for i := 0; i < trials; i++ {
		for j := range null {
			null[j] = r.NormFloat64()
		}
		s, err := RankSignificance(r.NormFloat64(), null, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if s.Significant {
			hits++
		}
	}
	iv := ClopperPearson(hits, trials, 0.001)
	if iv.Lo > 0.05 || iv.Hi < 0.05 {
		t.Fatalf("false-alarm rate %d/%d, 99.9%% interval [%.4f, %.4f] excludes 0.05", hits, trials, iv.Lo, iv.Hi)
	}
}

func TestRankSignificanceSaysWhenAlphaIsOutOfReach(t *testing.T) {
	// 10 random sets: the smallest p is 1/11 > 0.05.
	s, err := RankSignificance(1, repeat(0.5, 10), 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if s.Significant || s.Resolution != "cannot reach alpha with 10 random sets" || s.Needed != 19 || s.Direction != Above {
		t.Fatalf("%+v; want not significant, a resolution, 19 needed, above", s)
	}
	s, _ = RankSignificance(1, repeat(0.5, 19), 0.05)
	if !s.Significant || s.Resolution != "" {
		t.Fatalf("19 random sets at 0.05: %+v; want significant, no resolution", s)
	}
	s, _ = RankSignificance(0, repeat(0.5, 19), 0.05)
	if !s.Significant || s.Direction != Below || s.Important() {
		t.Fatalf("far below: %+v; want significant below, not important", s)
	}
}

func TestRandomSetsNeeded(t *testing.T) {
	for _, tt := range []struct {
		threshold float64
		want      int
	}{{0.05, 19}, {0.05 / 3, 59}, {0.01, 99}, {0.025, 39}, {0.3, 3}} {
		if got := RandomSetsNeeded(tt.threshold); got != tt.want {
			t.Errorf("RandomSetsNeeded(%g) = %d, want %d", tt.threshold, got, tt.want)
		}
		if MinRankP(tt.want) > tt.threshold*(1+1e-12) || MinRankP(tt.want-1) <= tt.threshold {
			t.Errorf("threshold %g: %d sets is not the fewest that reach it", tt.threshold, tt.want)
		}
	}
}

func TestClopperPearson(t *testing.T) {
	tests := []struct {
		k, n   int
		lo, hi float64
		source string
	}{
		// by hand: k = 0 gives Hi = 1 − (a/2)^(1/n).
		{0, 10, 0, 1 - math.Pow(0.025, 0.1), "by hand"},
		// R's binom.test(5, 10)$conf.int, printed to 7 digits.
		{5, 10, 0.1870860, 0.8129140, "binom.test"},
		{10, 10, math.Pow(0.025, 0.1), 1, "by hand"},
	}
	for _, tt := range tests {
		iv := ClopperPearson(tt.k, tt.n, 0.05)
		if !close(iv.Lo, tt.lo, 1e-6) || !close(iv.Hi, tt.hi, 1e-6) {
			t.Errorf("ClopperPearson(%d, %d) = [%.17g, %.17g], want [%.17g, %.17g] (%s)", tt.k, tt.n, iv.Lo, iv.Hi, tt.lo, tt.hi, tt.source)
		}
	}
}
