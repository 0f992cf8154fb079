package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The signal plot has a tick per random set and puts the set's value where
// the scale says, red only beyond every random set.
func TestSignalPlotPlacesTheValueOnTheRandomSetsScale(t *testing.T) {
	random := []float64{0, 1, 2, 3}
	beyond := string(signalPlot(4, random))
	if n := strings.Count(beyond, `class="r"`); n != 4 {
		t.Errorf("%d random ticks, want 4: %s", n, beyond)
	}
	// Scale 0…4 over x 3…93: 4 sits at 93, red.
	if !strings.Contains(beyond, `<circle cx="93.0" cy="6.0" r="2.5" fill="#c00"/>`) {
		t.Errorf("value 4 of 0…4 not a red dot at x 93: %s", beyond)
	}
	// Scale 0…3: 1 sits at 3 + 90/3 = 33, dark.
	inside := string(signalPlot(1, random))
	if !strings.Contains(inside, `<circle cx="33.0" cy="6.0" r="2.5" fill="#222"/>`) {
		t.Errorf("value 1 of 0…3 not a dark dot at x 33: %s", inside)
	}
	rows := auditRows([]AuditEntry{{Concept: "c", Signals: map[string]float64{"tcav_shift": 1},
		RandomSignals: map[string][]float64{"tcav_shift": random}}})
	if len(rows) != 1 || len(rows[0].Signals) != 1 || string(rows[0].Signals[0].Plot) != inside {
		t.Errorf("audit row signals %+v, want the plot of 1 against the random sets", rows[0].Signals)
	}
}

// The built report shows each audit signal's plot as SVG, not as escaped
// text.
func TestBuiltReportDrawsTheAuditSignals(t *testing.T) {
	dir := syntheticRun(t)
	r, err := ReadJSON(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	r.Audit = []AuditEntry{{Target: "zebra", Concept: "striped", Layer: "inception4c", Suspicious: true, Score: 9, Threshold: 3,
		Signals:       map[string]float64{"tcav_shift": 0.9, "alignment_shift": 0.01},
		RandomSignals: map[string][]float64{"tcav_shift": {0.1, 0.2, 0.3}, "alignment_shift": {0.01, 0.02, 0.03}},
		RobustBy:      "jpeg75"}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	if err := Build(dir); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(html)
	if n := strings.Count(page, `<svg class="sig"`); n != 2 {
		t.Errorf("%d signal plots in the report, want 2", n)
	}
	if strings.Contains(page, "&lt;svg") {
		t.Error("the signal plot is escaped as text")
	}
	if !strings.Contains(page, `fill="#c00"`) {
		t.Error("tcav_shift 0.9 beyond every random set is not drawn red")
	}
}
