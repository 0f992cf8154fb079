package report

import (
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
