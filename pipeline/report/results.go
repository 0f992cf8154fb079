// Package report turns a run's results into the files a user reads:
// results.json (the one machine-readable result), tcav.csv, PNG charts and a
// self-contained report.html.
package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/facets"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// Convention states the TCAV sign convention; it is recorded in results.json
// because the reference implementations differ (see SPEC §5).
const Convention = "S(x) = gradient of the target logit w.r.t. the layer activation, " +
	"dotted with the unit CAV pointing toward the concept; " +
	"score = fraction of class images with S(x) > 0; magnitude = mean of S(x)"

// Results is the content of results.json.
type Results struct {
	Convention string        `json:"convention"`
	TCAV       []TCAVEntry   `json:"tcav"`
	Attack     []AttackEntry `json:"attack"`
	Facets     []FacetEntry  `json:"facets"`
	Audit      []AuditEntry  `json:"audit,omitempty"`
}

// TCAVEntry and Null are the TCAV stage's results (see package tcav).
type (
	TCAVEntry = tcav.Entry
	Null      = tcav.Null
)

// AttackScore, AttackEntry and Transfer are the attack stage's results
// (see package attack).
type (
	AttackScore = tcav.SetScore
	AttackEntry = attack.Entry
	Transfer    = attack.Transfer
)

// FacetEntry is the facets stage's result (see package facets).
type FacetEntry = facets.Entry

// Validate checks what JSON and the charts rely on: per-random-set lists of
// equal length, finite numbers (JSON has no NaN or Inf), known directions.
func (r *Results) Validate() error {
	var errs []error
	for i := range r.TCAV {
		e := &r.TCAV[i]
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("tcav %s/%s/%s: %s", e.Target, e.Concept, e.Layer, fmt.Sprintf(format, args...)))
		}
		if e.Target == "" || e.Concept == "" || e.Layer == "" {
			bad("empty target, concept or layer")
		}
		n := len(e.Scores)
		if n == 0 {
			bad("no scores")
		}
		if len(e.Magnitudes) != n || len(e.CAVAccuracy) != n {
			bad("%d scores, %d magnitudes, %d cav_accuracy: want one each per random set", n, len(e.Magnitudes), len(e.CAVAccuracy))
		}
		if len(e.RandomSets) != 0 && len(e.RandomSets) != n {
			bad("%d scores but %d random_sets", n, len(e.RandomSets))
		}
		for _, l := range []struct {
			name string
			xs   []float64
		}{{"scores", e.Scores}, {"magnitudes", e.Magnitudes}, {"random_scores", e.RandomScores}, {"cav_accuracy", e.CAVAccuracy}} {
			if j := nonFinite(l.xs...); j >= 0 {
				bad("%s[%d] is %v", l.name, j, l.xs[j])
			}
		}
		if nonFinite(e.Mean, e.Std, e.PValue) >= 0 {
			bad("mean %v, std %v, p_value %v: want finite numbers", e.Mean, e.Std, e.PValue)
		}
		if err := checkDirection(e.Direction); err != nil {
			bad("%v", err)
		}
		if nonFinite(e.Threshold) >= 0 {
			bad("threshold %v: want a finite number", e.Threshold)
		}
		if e.Null != nil {
			if nonFinite(append([]float64{e.Null.Statistic, e.Null.Centre}, e.Null.Means...)...) >= 0 {
				bad("null: want finite numbers")
			}
			if len(e.Null.Means) != n {
				bad("null: %d means for %d random sets", len(e.Null.Means), n)
			}
		}
		if e.Resolution != "" && e.Significant {
			bad("significant although %s", e.Resolution)
		}
	}
	for i := range r.Attack {
		a := &r.Attack[i]
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("attack %s/%s/%s %s eps %g: %s", a.Concept, a.Target, a.Layer, a.Goal, a.Eps, fmt.Sprintf(format, args...)))
		}
		if nonFinite(a.Eps, a.Linf, a.L2Mean, a.PSNRMean, a.ChangedPrediction) >= 0 {
			bad("eps %v, linf %v, l2_mean %v, psnr_mean %v, changed_prediction %v: want finite numbers (cap PSNR for unchanged images)",
				a.Eps, a.Linf, a.L2Mean, a.PSNRMean, a.ChangedPrediction)
		}
		for _, s := range []struct {
			name string
			sc   *AttackScore
		}{{"before", &a.Before}, {"after", &a.After}} {
			if nonFinite(s.sc.Mean, s.sc.Std, s.sc.PValue) >= 0 || (s.sc.RandomMean != nil && nonFinite(*s.sc.RandomMean) >= 0) {
				bad("%s: want finite numbers", s.name)
			}
			if err := checkDirection(s.sc.Direction); err != nil {
				bad("%s: %v", s.name, err)
			}
		}
	}
	return errors.Join(errs...)
}

func checkDirection(d stats.Direction) error {
	if d != stats.Above && d != stats.Below {
		return fmt.Errorf("direction %q: want %q or %q", d, stats.Above, stats.Below)
	}
	return nil
}

// nonFinite returns the index of the first NaN or Inf, or -1.
func nonFinite(xs ...float64) int {
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return i
		}
	}
	return -1
}

// normalized returns a copy in the canonical order (so that results.json
// and everything derived from it are byte-identical for identical results,
// whatever order the stages finished in), with empty lists instead of nil
// so the JSON always has arrays where the shape has them.
func (r *Results) normalized() *Results {
	out := &Results{
		Convention: cmp.Or(r.Convention, Convention),
		TCAV:       slices.Clone(r.TCAV),
		Attack:     slices.Clone(r.Attack),
		Facets:     slices.Clone(r.Facets),
		Audit:      slices.Clone(r.Audit),
	}
	slices.SortStableFunc(out.TCAV, func(a, b TCAVEntry) int {
		return cmp.Or(cmp.Compare(a.Target, b.Target), cmp.Compare(a.Layer, b.Layer), cmp.Compare(a.Concept, b.Concept))
	})
	slices.SortStableFunc(out.Attack, func(a, b AttackEntry) int {
		return cmp.Or(cmp.Compare(a.Target, b.Target), cmp.Compare(a.Concept, b.Concept), cmp.Compare(a.Layer, b.Layer),
			cmp.Compare(a.Goal, b.Goal), cmp.Compare(a.Objective, b.Objective), cmp.Compare(a.Norm, b.Norm), cmp.Compare(a.Eps, b.Eps))
	})
	slices.SortStableFunc(out.Facets, func(a, b FacetEntry) int {
		return cmp.Or(cmp.Compare(a.Target, b.Target), cmp.Compare(a.Facet, b.Facet))
	})
	out.TCAV, out.Attack, out.Facets = nonNil(out.TCAV), nonNil(out.Attack), nonNil(out.Facets)
	for i := range out.TCAV {
		e := &out.TCAV[i]
		e.Scores, e.Magnitudes, e.RandomScores, e.CAVAccuracy = nonNil(e.Scores), nonNil(e.Magnitudes), nonNil(e.RandomScores), nonNil(e.CAVAccuracy)
		if e.Null != nil {
			n := *e.Null
			n.Means = nonNil(n.Means)
			e.Null = &n
		}
	}
	for i := range out.Facets {
		f := &out.Facets[i]
		f.Clean, f.Attacked = nonNil(f.Clean), nonNil(f.Attacked)
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// EncodeJSON writes r as indented JSON in the canonical order. An empty
// Convention is filled in with this package's Convention.
func EncodeJSON(w io.Writer, r *Results) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r.normalized())
}

// WriteJSON atomically writes r to path (results.json).
func WriteJSON(path string, r *Results) error {
	var buf bytes.Buffer
	if err := EncodeJSON(&buf, r); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.Write(path, buf.Bytes())
}

// ReadJSON reads a results.json. Unknown fields are ignored, so that a newer
// results.json still renders.
func ReadJSON(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return &r, nil
}
