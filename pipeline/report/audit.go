package report

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
	// Plain is TCAV of the set as handed over, against the audit's random
	// sets; Robust is TCAV after the purification with the median score.
	Plain    AttackScore `json:"plain"`
	Robust   AttackScore `json:"robust"`
	RobustBy string      `json:"robust_by"`
	// MostShifted are the images that move most under the purifications,
	// the most suspicious first.
	MostShifted []string `json:"most_shifted"`
}
