package sweep

import (
	"bytes"
	"encoding/csv"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/present"
	"github.com/cavforge/cavforge/pipeline/run"
)

// demoSweep writes a small base config over the bundled demo and a sweep
// over it: 2 layers × 2 seeds, where the second layer does not exist, so
// tasks 2 and 3 fail when they run (not when planned: layers are checked
// against the model).
func demoSweep(t *testing.T) *Sweep {
	t.Helper()
	dir := t.TempDir()
	base := testdemo.Config{Name: "demo", MaxImages: 12, BatchSize: 16}.YAML() + `tcav:
  targets: [zebra]
  concepts: [striped]
  random: {prefix: random500_, count: 3}
  layers: [block3]
`
	testdemo.WriteFile(t, dir, "base.yaml", base)
	testdemo.WriteFile(t, dir, "sweep.yaml", `base: base.yaml
grid:
  tcav.layers: [[block3], [block4]]
  seed: [3, 4]
out: out
`)
	s, err := Load(filepath.Join(dir, "sweep.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func quietOptions() run.Options {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return run.Options{Log: l}
}

func states(t *testing.T, s *Sweep) (string, []TaskStatus) {
	t.Helper()
	sts, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range sts {
		names = append(names, string(st.State))
	}
	return strings.Join(names, " "), sts
}

func TestRunStatusCollect(t *testing.T) {
	s := demoSweep(t)
	if err := s.WritePlan(); err != nil {
		t.Fatal(err)
	}
	if got, _ := states(t, s); got != "missing missing missing missing" {
		t.Fatalf("after plan: %s", got)
	}

	dir, skipped, err := s.RunTask(0, quietOptions())
	if err != nil || skipped || dir != s.TaskDir(0) {
		t.Fatalf("task 0: %q, skipped %v, %v", dir, skipped, err)
	}
	if _, skipped, err := s.RunTask(0, quietOptions()); err != nil || !skipped {
		t.Fatalf("task 0 again: skipped %v, %v; want it skipped", skipped, err)
	}
	cfg, err := config.Load(filepath.Join(s.TaskDir(0), "config.yaml"), nil)
	if err != nil || cfg.Seed != 3 || cfg.TCAV.Layers[0] != "block3" {
		t.Fatalf("task 0's resolved config: %v", err)
	}

	// A task that fails leaves nothing but its marker, which says why.
	if _, _, err := s.RunTask(2, quietOptions()); err == nil || !strings.Contains(err.Error(), "block4") {
		t.Fatalf("task 2: %v", err)
	}
	if _, err := os.Stat(s.TaskDir(2)); err == nil {
		t.Error("failed task 2 left its run directory")
	}

	// Another process holds task 3: it is running and cannot start twice.
	l, err := s.lock(3)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RunTask(3, quietOptions()); !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "pid") {
		t.Errorf("task 3 while locked: %v", err)
	}
	// A run killed mid-way leaves its partial directory: failed, not missing.
	partial := filepath.Join(s.Dir, "tasks", ".1.partial-123")
	os.MkdirAll(partial, 0o755)

	got, sts := states(t, s)
	if got != "done failed failed running" {
		t.Fatalf("states: %s", got)
	}
	if d := sts[2].Detail; !strings.Contains(d, `"block4"`) || strings.Contains(d, "\n") {
		t.Errorf("task 2's detail: %q", d)
	}
	if !strings.Contains(sts[1].Detail, "interrupted") || !strings.Contains(sts[3].Detail, "pid") || sts[0].Seconds <= 0 {
		t.Errorf("details: %+v", sts)
	}
	l.unlock()
	if got, _ := states(t, s); got != "done failed failed missing" {
		t.Fatalf("after unlock: %s", got)
	}

	// Running the interrupted task cleans up after it.
	if _, _, err := s.RunTask(1, quietOptions()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("stale partial directory left")
	}

	c, err := s.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rows) != 2 || c.Rows[0].Task != 0 || c.Rows[1].Task != 1 || len(c.NotDone) != 2 {
		t.Fatalf("collected %d rows, not done %v", len(c.Rows), c.NotDone)
	}
	files, err := c.Write(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Errorf("wrote %v", files)
	}
	f, _ := os.Open(filepath.Join(s.Dir, CollectCSV))
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 3 {
		t.Fatalf("collect.csv: %d records, %v", len(recs), err)
	}
	head := strings.Join(recs[0][:8], ",")
	if head != "task,tcav.layers,seed,kind,target,concept,layer,mean" {
		t.Errorf("csv header %s", head)
	}
	if got := strings.Join(recs[2][:7], ","); got != "1,[block3],4,tcav,zebra,striped,block3" {
		t.Errorf("csv row %s", got)
	}
	for _, name := range []string{"tcav-vs-tcav.layers.png", "tcav-vs-seed.png"} {
		b, err := os.ReadFile(filepath.Join(s.Dir, PlotsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var table bytes.Buffer
	c.WriteTable(&table)
	if !strings.Contains(table.String(), "striped") || !strings.Contains(table.String(), "not done (no results): tasks 2,3") {
		t.Errorf("table:\n%s", table.String())
	}
	// The table words verdicts as the run reports do, so a sweep never
	// reads a result differently from the task's own report.
	lines := strings.Split(table.String(), "\n")
	for i, r := range c.Rows {
		want := present.VerdictOf(r.TCAV.Significant, r.TCAV.Direction).Text()
		if !strings.HasSuffix(strings.TrimSpace(lines[i+1]), want) {
			t.Errorf("table row %d %q: want the verdict %q", i, lines[i+1], want)
		}
	}
}

func TestCollectWithNothingDone(t *testing.T) {
	s := demoSweep(t)
	if _, err := s.Collect(); err == nil || !strings.Contains(err.Error(), "no task") {
		t.Fatalf("collect: %v", err)
	}
}
