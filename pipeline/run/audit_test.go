package run

import (
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/pipeline/report"
)

// The demo's clean sets are not flagged at the calibrated threshold, the
// striped set poisoned at 8/255 is, the robust score of every clean set
// keeps the TCAV stage's verdict, and the signals are the same when
// recomputed from scratch with the same seed.
func TestAuditFlagsPoisonedStripedNotCleanSets(t *testing.T) {
	overrides := attackConfig(t, `[{concept: striped, target: zebra, layer: block3, goal: suppress, eps: [0.0314], step: 0.004, steps: 20}]`,
		"audit={}")
	cfg := demoConfig(t, "", overrides...)
	res, _ := mustRun(t, cfg, filepath.Join(t.TempDir(), "run"))
	var clean []report.AuditEntry
	flagged := false
	for _, a := range res.Audit {
		t.Logf("%s→%s at %s: suspicious %v, score %.2f / %.2f (false alarms %.2f); purified %v; TCAV %.3f, robust %.3f (%s)",
			a.Concept, a.Target, a.Layer, a.Suspicious, a.Score, a.Threshold, a.FalseAlarmRate, a.Purified, a.Plain.Mean, a.Robust.Mean, a.RobustBy)
		if a.Images == "" {
			clean = append(clean, a)
			continue
		}
		flagged = a.Suspicious
		if a.Robust.Mean < 0.8 {
			t.Errorf("robust TCAV of the poisoned set %.3f; the clean striped set scores about 1", a.Robust.Mean)
		}
	}
	if len(clean) != 2 || !flagged {
		t.Fatalf("%d clean entries (want striped, dotted), poisoned flagged %v (want true)", len(clean), flagged)
	}
	for _, a := range clean {
		if a.Suspicious {
			t.Errorf("clean %s flagged: score %.2f > threshold %.2f", a.Concept, a.Score, a.Threshold)
		}
		plain := entry(t, res, a.Concept)
		if a.Robust.Significant != plain.Significant || (plain.Significant && a.Robust.Direction != plain.Direction) {
			t.Errorf("%s: robust %+v, the TCAV stage says significant %v %s", a.Concept, a.Robust, plain.Significant, plain.Direction)
		}
	}

	again := demoConfig(t, "", overrides...)
	again.CacheDir = filepath.Join(t.TempDir(), "fresh-cache")
	dir, err := Run(again, Options{Out: filepath.Join(t.TempDir(), "again"), Log: quietLog(), Stages: []string{"audit"}})
	if err != nil {
		t.Fatal(err)
	}
	res2, err := report.ReadJSON(filepath.Join(dir, report.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Audit) != len(clean) {
		t.Fatalf("--stages audit: %d entries, want the %d clean sets", len(res2.Audit), len(clean))
	}
	for i, a := range res2.Audit {
		for name, v := range clean[i].Signals {
			if a.Signals[name] != v {
				t.Errorf("%s: signal %s %v, then %v from a fresh cache with the same seed", a.Concept, name, v, a.Signals[name])
			}
		}
		if a.Score != clean[i].Score || a.Threshold != clean[i].Threshold {
			t.Errorf("%s: score/threshold %v/%v, then %v/%v", a.Concept, clean[i].Score, clean[i].Threshold, a.Score, a.Threshold)
		}
	}
}
