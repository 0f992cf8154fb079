package tcav

import (
	"fmt"

	"github.com/cavforge/cavforge/pipeline/stats"
)

// Entry is one concept's TCAV result for one target and layer, over R
// random sets. Scores, Magnitudes, CAVAccuracy (and RandomSets, when given)
// are indexed by random set; RandomScores are the R random-vs-random scores.
type Entry struct {
	Target       string          `json:"target"`
	Concept      string          `json:"concept"`
	Layer        string          `json:"layer"`
	RandomSets   []string        `json:"random_sets,omitempty"`
	Scores       []float64       `json:"scores"`
	Magnitudes   []float64       `json:"magnitudes"`
	RandomScores []float64       `json:"random_scores"`
	CAVAccuracy  []float64       `json:"cav_accuracy"`
	Mean         float64         `json:"mean"`
	Std          float64         `json:"std"`
	PValue       float64         `json:"p_value"`
	Significant  bool            `json:"significant"`
	Direction    stats.Direction `json:"direction"`

	// Test is the significance test that decided, RandomSetCount how many
	// random sets it had, and Threshold the per-test alpha (after
	// Bonferroni) that PValue was compared with.
	Test           stats.Method `json:"test,omitempty"`
	RandomSetCount int          `json:"random_set_count,omitempty"`
	Threshold      float64      `json:"threshold,omitempty"`
	// Null is the calibrated test's null distribution.
	Null *Null `json:"null,omitempty"`
	// Resolution says why no outcome could be significant (too few random
	// sets for the threshold), and RandomSetsNeeded how many would do.
	Resolution       string `json:"resolution,omitempty"`
	RandomSetsNeeded int    `json:"random_sets_needed,omitempty"`
}

// Null is what the calibrated test ranked the concept among: Means[i] is
// random set i's mean TCAV score against Negatives other sets, scored as
// if it were a concept; Statistic is the concept's mean over its Negatives
// random sets (Mean itself when Negatives is every random set), Centre the
// mean of all of them, from which the two-sided distance is taken.
type Null struct {
	Statistic float64   `json:"statistic"`
	Centre    float64   `json:"centre"`
	Negatives int       `json:"negatives"`
	Means     []float64 `json:"means"`
}

// Summarize fills Mean, Std and the significance fields from Scores and
// RandomScores with a t-test. threshold is the per-test alpha (see
// stats.BonferroniAlpha).
func (e *Entry) Summarize(method stats.Method, threshold float64) error {
	sig, err := stats.Test(e.Scores, e.RandomScores, method, threshold)
	if err != nil {
		return fmt.Errorf("%s: %w", e.key(), err)
	}
	e.Record(method, threshold, sig)
	return nil
}

// Record fills Mean, Std and the significance fields from a decision made
// by method at threshold.
func (e *Entry) Record(method stats.Method, threshold float64, sig stats.Significance) {
	e.Mean, e.Std = stats.Mean(e.Scores), SampleStd(e.Scores)
	e.PValue, e.Significant, e.Direction = sig.PValue, sig.Significant, sig.Direction
	e.Test, e.RandomSetCount, e.Threshold = method, len(e.Scores), threshold
	e.Resolution, e.RandomSetsNeeded = sig.Resolution, sig.Needed
}

// Significance returns the entry's decision.
func (e *Entry) Significance() stats.Significance {
	return stats.Significance{PValue: e.PValue, Significant: e.Significant, Direction: e.Direction,
		Resolution: e.Resolution, Needed: e.RandomSetsNeeded}
}

func (e *Entry) key() string {
	return fmt.Sprintf("tcav %s/%s/%s", e.Target, e.Concept, e.Layer)
}

// SampleStd is the sample standard deviation, 0 for fewer than two values.
func SampleStd(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	return stats.StdDev(xs)
}

// SetScore is the TCAV result of one concept set (before or after an attack,
// or a purification).
type SetScore struct {
	Mean        float64         `json:"mean"`
	Std         float64         `json:"std"`
	PValue      float64         `json:"p_value"`
	Significant bool            `json:"significant"`
	Direction   stats.Direction `json:"direction"`
	// Resolution says why it could not be significant (see Entry).
	Resolution string `json:"resolution,omitempty"`
	// RandomMean is the mean random-vs-random score it was tested against
	// (the after-attack score uses random sets the attack never saw). When
	// absent, charts fall back to the matching TCAV entry's baseline.
	RandomMean *float64 `json:"random_mean,omitempty"`
}
