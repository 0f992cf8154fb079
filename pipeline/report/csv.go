package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
)

var tcavCSVHeader = []string{
	"target", "concept", "layer", "random_set", "score", "magnitude", "cav_accuracy",
	"random_score", "p_value", "significant", "direction",
}

// EncodeTCAVCSV writes one row per target, concept, layer and random set, in
// the canonical order of results.json. The p-value and decision belong to
// the concept (over all random sets) and repeat on each of its rows.
// random_set is the set's name when the entry lists RandomSets, its index
// otherwise; random_score is that set's random-vs-random score.
func EncodeTCAVCSV(w io.Writer, entries []TCAVEntry) error {
	entries = (&Results{TCAV: entries}).normalized().TCAV
	cw := csv.NewWriter(w)
	if err := cw.Write(tcavCSVHeader); err != nil {
		return err
	}
	for _, e := range entries {
		for i, score := range e.Scores {
			set := strconv.Itoa(i)
			if i < len(e.RandomSets) {
				set = e.RandomSets[i]
			}
			err := cw.Write([]string{
				e.Target, e.Concept, e.Layer, set,
				formatFloat(score), at(e.Magnitudes, i), at(e.CAVAccuracy, i), at(e.RandomScores, i),
				formatFloat(e.PValue), strconv.FormatBool(e.Significant), string(e.Direction),
			})
			if err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteTCAVCSV atomically writes tcav.csv.
func WriteTCAVCSV(path string, entries []TCAVEntry) error {
	err := atomicfile.WriteWith(path, func(w io.Writer) error { return EncodeTCAVCSV(w, entries) })
	if err != nil {
		return fmt.Errorf("tcav csv: %w", err)
	}
	return nil
}

func at(xs []float64, i int) string {
	if i >= len(xs) {
		return ""
	}
	return formatFloat(xs[i])
}

// formatFloat is the shortest representation that reads back exactly.
func formatFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
