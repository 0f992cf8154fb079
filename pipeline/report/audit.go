package report

import (
	"fmt"
	"html/template"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/present"
)

// AuditEntry is the audit stage's result (see package audit).
type AuditEntry = audit.Entry

type auditRow struct {
	Concept, Images, Target, Layer, Verdict, Class string
	Score, FalseAlarm                              string
	Signals                                        []auditSignal
	Plain, PlainClass, Robust, RobustClass         string
	Shifted                                        []string
}

func auditRows(entries []AuditEntry) []auditRow {
	var rows []auditRow
	for _, e := range entries {
		r := auditRow{Concept: e.Concept, Images: e.Images, Target: e.Target, Layer: e.Layer,
			Verdict: "not suspicious", Score: fmt.Sprintf("%.2f / %.2f", e.Score, e.Threshold),
			FalseAlarm: fmt.Sprintf("%.0f%% of %d", 100*e.FalseAlarmRate, len(e.RandomSignals["tcav_shift"])),
			Plain:      scoreText(e.Plain), PlainClass: verdictClass(present.VerdictOf(e.Plain.Significant, e.Plain.Direction)),
			Robust:      scoreText(e.Robust) + " (" + e.RobustBy + ")",
			RobustClass: verdictClass(present.VerdictOf(e.Robust.Significant, e.Robust.Direction)), Shifted: e.MostShifted}
		if e.Suspicious {
			r.Verdict, r.Class = "SUSPICIOUS", "flagged"
		}
		for _, name := range slices.Sorted(maps.Keys(e.Signals)) {
			star := ""
			if slices.Contains(audit.Scored, name) {
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
