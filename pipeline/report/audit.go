package report

import (
	"fmt"
	"html/template"
	"maps"
	"math"
	"slices"
	"strings"
)

// AuditEntry is the audit of one concept set for one target at one layer
// (package audit): its signals, their combined score against the random
// sets audited as concepts, the calibrated decision, and TCAV before and
// after purification.
type AuditEntry struct {
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
	Plain    AttackScore `json:"plain"`
	Robust   AttackScore `json:"robust"`
	RobustBy string      `json:"robust_by"`
	// Purified is the TCAV score after each purification.
	Purified map[string]float64 `json:"purified"`
	// MostShifted are the images that move most under the purifications,
	// the most suspicious first.
	MostShifted []string `json:"most_shifted"`
}

type auditRow struct {
	Concept, Images, Target, Layer, Verdict, Class string
	Score, FalseAlarm                              string
	Signals                                        []auditSignal
	Plain, PlainClass, Robust, RobustClass         string
	Shifted                                        []string
}

// scoredSignals are the signals the combined score reads (audit.Scored;
// report does not import the stage that computed them).
var scoredSignals = map[string]bool{"tcav_shift": true, "tcav_shift_t": true, "alignment_shift": true, "alignment_shift_t": true}

func auditRows(entries []AuditEntry) []auditRow {
	var rows []auditRow
	for _, e := range entries {
		r := auditRow{Concept: e.Concept, Images: e.Images, Target: e.Target, Layer: e.Layer,
			Verdict: "not suspicious", Score: fmt.Sprintf("%.2f / %.2f", e.Score, e.Threshold),
			FalseAlarm: fmt.Sprintf("%.0f%% of %d", 100*e.FalseAlarmRate, len(e.RandomSignals["tcav_shift"])),
			Plain:      scoreText(e.Plain), PlainClass: verdictOf(e.Plain.Significant, e.Plain.Direction).class(),
			Robust:      scoreText(e.Robust) + " (" + e.RobustBy + ")",
			RobustClass: verdictOf(e.Robust.Significant, e.Robust.Direction).class(), Shifted: e.MostShifted}
		if e.Suspicious {
			r.Verdict, r.Class = "SUSPICIOUS", "flagged"
		}
		for _, name := range slices.Sorted(maps.Keys(e.Signals)) {
			star := ""
			if scoredSignals[name] {
				star = "*"
			}
			text := fmt.Sprintf("%s%s %.3g", name, star, e.Signals[name])
			sig := auditSignal{}
			if rs := e.RandomSignals[name]; len(rs) > 0 {
				text += fmt.Sprintf(" [%.3g … %.3g]", slices.Min(rs), slices.Max(rs))
				sig.Plot = signalPlot(e.Signals[name], rs)
			}
			sig.Text = text
			r.Signals = append(r.Signals, sig)
		}
		rows = append(rows, r)
	}
	return rows
}

// auditSignal is one signal of an audit row: its text and a small plot of
// it against the random sets.
type auditSignal struct {
	Text string
	Plot template.HTML
}

// Plot geometry, in pixels.
const plotW, plotH, plotPad = 96.0, 12.0, 3.0

// signalPlot is an inline SVG strip: a grey tick per random set audited as
// a concept, and the set's own value as a dot, red when it lies beyond every
// random set. The scale runs from the smallest to the largest of them all.
func signalPlot(value float64, random []float64) template.HTML {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return ""
	}
	lo, hi := math.Min(value, slices.Min(random)), math.Max(value, slices.Max(random))
	x := func(v float64) float64 {
		if hi == lo {
			return plotW / 2
		}
		return plotPad + (v-lo)/(hi-lo)*(plotW-2*plotPad)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="sig" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f">`, plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ccc"/>`, plotPad, plotH/2, plotW-plotPad, plotH/2)
	for _, v := range random {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		fmt.Fprintf(&b, `<line class="r" x1="%.1f" y1="2" x2="%.1f" y2="%.0f" stroke="#888"/>`, x(v), x(v), plotH-2)
	}
	fill := "#222"
	if value > slices.Max(random) {
		fill = "#c00"
	}
	fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/></svg>`, x(value), plotH/2, fill)
	return template.HTML(b.String()) // numbers only
}
