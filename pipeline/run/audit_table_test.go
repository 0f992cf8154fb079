package run

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/pipeline/audit"
	"github.com/cavforge/cavforge/pipeline/report"
)

var auditTable = flag.Bool("audit-table", false, "run the audit experiment on the demo and print its detection table (minutes)")

// TestAuditTable is the audit experiment, not a test: poisoned sets made by
// cavforge's own attacks (suppress striped, promote dotted; L∞ 2, 4, 8,
// 16/255; stealth off and on; all or half of the set poisoned), clean
// concept sets and the random sets audited as concepts. It prints detection
// and false-alarm rates, AUROC and the robust score's distance from the
// clean score.
//
//	go test ./pipeline/run -run TestAuditTable -audit-table -v -timeout 30m
func TestAuditTable(t *testing.T) {
	if !*auditTable {
		t.Skip("the audit experiment runs with -audit-table")
	}
	const attackLayer = "block3"
	epss := []float64{2.0 / 255, 4.0 / 255, 8.0 / 255, 16.0 / 255}
	var eps []string
	for _, e := range epss {
		eps = append(eps, strconv.FormatFloat(e, 'g', 4, 64))
	}
	var attacks []string
	for _, goal := range [][2]string{{"suppress", "striped"}, {"promote", "dotted"}} {
		for _, w := range []int{0, 10} {
			attacks = append(attacks, fmt.Sprintf("{concept: %s, target: zebra, layer: %s, goal: %s, eps: [%s], step: 0.002, steps: 40, stealth: {weight: %d}}",
				goal[1], attackLayer, goal[0], strings.Join(eps, ", "), w))
		}
	}
	base := []string{"tcav.random.count=10", "tcav.concepts=[striped,dotted,zigzagged]", "tcav.layers=[block2,block3]", "data.max_images=30"}
	cache := filepath.Join(t.TempDir(), "cache")
	cfg := demoConfig(t, "", append(base, "attack=["+strings.Join(attacks, ", ")+"]")...)
	cfg.CacheDir = cache
	attacked, err := Run(cfg, Options{Out: filepath.Join(t.TempDir(), "attack"), Log: quietLog(), Stages: []string{"attack"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := report.ReadJSON(filepath.Join(attacked, report.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}

	// A data root with the demo's sets and every poisoned set, whole and
	// half poisoned (the first half of the files, the rest clean).
	root := t.TempDir()
	sets := []string{"striped", "dotted", "zigzagged", "zebra"}
	for i := range 10 {
		sets = append(sets, fmt.Sprintf("random500_%d", i))
	}
	for _, s := range sets {
		copyDir(t, filepath.Join(demo, "data", s), filepath.Join(root, s), nil)
	}
	type poisoned struct {
		name, goal, concept string
		eps, stealth, part  float64
		after               float64
	}
	var subjects []poisoned
	for _, a := range res.Attack {
		name := fmt.Sprintf("p-%s-%.4g-s%g", a.Goal, a.Eps, a.StealthWeight)
		dir := filepath.Join(attacked, a.Images)
		copyDir(t, dir, filepath.Join(root, name), nil)
		stems, _ := filepath.Glob(filepath.Join(dir, "*.png"))
		slices.Sort(stems)
		half := map[string]bool{}
		for _, f := range stems[:len(stems)/2] {
			half[filepath.Base(f)] = true
		}
		copyDir(t, filepath.Join(demo, "data", a.Concept), filepath.Join(root, name+"-half"), nil)
		copyDir(t, dir, filepath.Join(root, name+"-half"), half)
		subjects = append(subjects, poisoned{name, a.Goal, a.Concept, a.Eps, a.StealthWeight, 1, a.After.Mean},
			poisoned{name + "-half", a.Goal, a.Concept, a.Eps, a.StealthWeight, 0.5, math.NaN()})
	}
	names := []string{"striped", "dotted", "zigzagged"}
	for _, s := range subjects {
		names = append(names, s.name)
	}
	cfg = demoConfig(t, root, append(base, "audit={concepts: ["+strings.Join(names, ", ")+"], attacked: false}")...)
	cfg.CacheDir = cache
	audited, err := Run(cfg, Options{Out: filepath.Join(t.TempDir(), "audit"), Log: quietLog(), Stages: []string{"audit"}})
	if err != nil {
		t.Fatal(err)
	}
	ares, err := report.ReadJSON(filepath.Join(audited, report.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]report.AuditEntry{}
	for _, a := range ares.Audit {
		byKey[a.Concept+"/"+a.Layer] = a
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nclean and random sets (threshold, false alarms measured on the 10 random sets held out in turn)\n")
	fmt.Fprintf(&b, "%-10s %-6s %7s %7s %6s %8s %8s\n", "set", "layer", "score", "thresh", "flag", "TCAV", "robust")
	var negatives = map[string][]float64{}
	for _, l := range []string{"block2", "block3"} {
		for _, c := range names[:3] {
			a := byKey[c+"/"+l]
			fmt.Fprintf(&b, "%-10s %-6s %7.2f %7.2f %6v %8.3f %8.3f\n", c, l, a.Score, a.Threshold, a.Suspicious, a.Plain.Mean, a.Robust.Mean)
			negatives[l] = append(negatives[l], a.Score)
		}
		a := byKey["striped/"+l]
		var rs []audit.Signals
		for name, vs := range a.RandomSignals {
			for i, v := range vs {
				if len(rs) <= i {
					rs = append(rs, audit.Signals{})
				}
				rs[i][name] = v
			}
		}
		c := audit.Calibrate(rs, cfg.Audit.FalseAlarm, cfg.Audit.MinScore)
		negatives[l] = append(negatives[l], c.RandomScores...)
		fmt.Fprintf(&b, "%-10s %-6s random sets' scores %v; threshold %.2f; false-alarm rate %.2f\n", "random", l, rounded(c.RandomScores), c.Threshold, c.FalseAlarmRate)
	}
	fmt.Fprintf(&b, "\npoisoned sets (attack at %s; clean = the clean concept's TCAV in the same audit)\n", attackLayer)
	fmt.Fprintf(&b, "%-26s %-6s %7s %6s %8s %8s %8s %8s %7s %6s\n", "set", "layer", "score", "flag", "after", "TCAV", "robust", "clean", "|r−c|", "by")
	type cell struct {
		flagged, any, n int
		dist            []float64
	}
	cells := map[string]*cell{}
	var positives = map[string][]float64{}
	for _, s := range subjects {
		key := fmt.Sprintf("eps %.4g (%g/255), %3.0f%% poisoned", s.eps, math.Round(s.eps*255), 100*s.part)
		if cells[key] == nil {
			cells[key] = &cell{}
		}
		cl := cells[key]
		cl.n++
		anyFlag := false
		for _, l := range []string{"block2", "block3"} {
			a := byKey[s.name+"/"+l]
			clean := byKey[s.concept+"/"+l].Plain.Mean
			fmt.Fprintf(&b, "%-26s %-6s %7.2f %6v %8.3f %8.3f %8.3f %8.3f %7.3f %6s\n", s.name, l, a.Score, a.Suspicious, s.after, a.Plain.Mean, a.Robust.Mean, clean,
				math.Abs(a.Robust.Mean-clean), strings.Split(a.RobustBy, " ")[0])
			positives[l] = append(positives[l], a.Score)
			anyFlag = anyFlag || a.Suspicious
			if l == attackLayer {
				if a.Suspicious {
					cl.flagged++
				}
				cl.dist = append(cl.dist, math.Abs(a.Robust.Mean-clean))
			}
		}
		if anyFlag {
			cl.any++
		}
	}
	fmt.Fprintf(&b, "\ndetection per cell (suppress/promote × stealth off/on = 4 sets each)\n")
	fmt.Fprintf(&b, "%-34s %10s %10s %12s\n", "cell", "at "+attackLayer, "any layer", "|robust−clean| max")
	keys := make([]string, 0, len(cells))
	for k := range cells {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c := cells[k]
		fmt.Fprintf(&b, "%-34s %6d/%-3d %6d/%-3d %12.3f\n", k, c.flagged, c.n, c.any, c.n, slices.Max(c.dist))
	}
	for _, l := range []string{"block2", "block3"} {
		fmt.Fprintf(&b, "AUROC at %s (poisoned vs clean concepts + random sets): %.3f\n", l, audit.AUROC(positives[l], negatives[l]))
	}
	t.Log(b.String())
}

func rounded(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = math.Round(x*100) / 100
	}
	return out
}

// copyDir copies the PNG files of src into dst (only those named in only,
// when it is not nil), replacing files of the same name.
func copyDir(t *testing.T, src, dst string, only map[string]bool) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(src, "*.png"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if only != nil && !only[filepath.Base(f)] {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
