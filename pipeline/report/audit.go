package report

import (
	"fmt"
	"maps"
	"slices"
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
	Signals                                        []string
	Plain, PlainClass, Robust, RobustClass         string
	Shifted                                        []string
}

// scoredSignals are the signals the combined score reads (audit.Scored;
// report does not import the stage that computed them).
var scoredSignals = map[string]bool{"tcav_shift": true, "tcav_shift_t": true}

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
			if rs := e.RandomSignals[name]; len(rs) > 0 {
				text += fmt.Sprintf(" [%.3g … %.3g]", slices.Min(rs), slices.Max(rs))
			}
			r.Signals = append(r.Signals, text)
		}
		rows = append(rows, r)
	}
	return rows
}
