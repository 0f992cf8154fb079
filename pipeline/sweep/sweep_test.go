package sweep

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeSweep writes a sweep file, and an empty base.yaml next to it.
func writeSweep(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "base.yaml"), []byte("name: base\nmodel: {path: m.pt}\ntcav: {targets: [zebra], concepts: [striped], layers: [block3]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "sweep.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Task numbering is the cartesian product, keys in file order, the last
// key fastest, and the same for every process that loads the file.
func TestTaskNumbering(t *testing.T) {
	p := writeSweep(t, `base: base.yaml
grid:
  tcav.layers: [[inception3b], [inception4c, inception4e]]
  attack.0.eps: [[0.0078], 0.0314]
  seed: [0, 1, 2]
`)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 12 {
		t.Fatalf("%d tasks, want 12", s.Len())
	}
	want := map[int][]string{
		0:  {"tcav.layers=[inception3b]", "attack.0.eps=[0.0078]", "seed=0"},
		1:  {"tcav.layers=[inception3b]", "attack.0.eps=[0.0078]", "seed=1"},
		3:  {"tcav.layers=[inception3b]", "attack.0.eps=0.0314", "seed=0"},
		6:  {"tcav.layers=[inception4c, inception4e]", "attack.0.eps=[0.0078]", "seed=0"},
		11: {"tcav.layers=[inception4c, inception4e]", "attack.0.eps=0.0314", "seed=2"},
	}
	for i, w := range want {
		task, err := s.Task(i)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(task.Overrides, w) {
			t.Errorf("task %d: %q, want %q", i, task.Overrides, w)
		}
	}
	task, _ := s.Task(6)
	if v := task.Values["tcav.layers"]; !reflect.DeepEqual(v, []any{"inception4c", "inception4e"}) {
		t.Errorf("task 6 values: %#v", task.Values)
	}
	if wantDir := filepath.Join(filepath.Dir(p), "runs", "base-sweep"); s.Dir != wantDir {
		t.Errorf("default dir %s, want %s", s.Dir, wantDir)
	}
	again, _ := Load(p)
	if !reflect.DeepEqual(s.Tasks(), again.Tasks()) {
		t.Error("two loads number the tasks differently")
	}
	if _, err := s.Task(12); err == nil || !strings.Contains(err.Error(), "task 12 is out of range: the sweep "+p+" has 12 tasks (0..11)") {
		t.Errorf("out of range: %v", err)
	}
}

// Values that must stay strings or mappings survive the trip through --set.
func TestValuesRoundTripThroughOverrides(t *testing.T) {
	p := writeSweep(t, `base: base.yaml
out: elsewhere
grid:
  tcav.targets: [["340"], [zebra]]
  tcav.cav: [{classifier: logistic, alpha: 0.1}]
`)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != filepath.Join(filepath.Dir(p), "elsewhere") {
		t.Errorf("out: %s", s.Dir)
	}
	cfg, err := s.Config(0)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TCAV.Targets[0] != "340" || cfg.TCAV.CAV.Classifier != "logistic" || cfg.TCAV.CAV.Alpha != 0.1 {
		t.Errorf("task 0 config: targets %q, cav %+v", cfg.TCAV.Targets, cfg.TCAV.CAV)
	}
	task, _ := s.Task(0)
	if task.Overrides[0] != `tcav.targets=["340"]` {
		t.Errorf("override %q", task.Overrides[0])
	}
}

// Every mistake in a sweep file is one line that names the file, the line
// and the key.
func TestBadSweepFiles(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "base: base.yaml\ngrid: {seed: [1]}\nseeds: [1]\n", []string{":3:", `unknown key "seeds"`}},
		{"misspelt key", "base: base.yaml\ngird:\n  seed: [1]\n", []string{":2:", `unknown key "gird" (did you mean "grid"?)`}},
		{"base not a path", "base: [base.yaml]\ngrid: {seed: [1]}\n", []string{":1:", "base: want a string, got a list"}},
		{"out not a path", "base: base.yaml\nout: {dir: x}\ngrid: {seed: [1]}\n", []string{":2:", "out: want a string, got a mapping"}},
		{"grid not a mapping", "base: base.yaml\ngrid: [seed]\n", []string{":2:", "grid: want a mapping"}},
		{"duplicate top key", "base: base.yaml\nbase: base.yaml\ngrid: {seed: [1]}\n", []string{":2:", `duplicate key "base"`}},
		{"grid key not a config path", "base: base.yaml\ngrid:\n  seed: [1]\n  tcav.layer: [[a]]\n", []string{":4:", `unknown key "tcav.layer"`, `did you mean "tcav.layers"`}},
		{"index into a non-list", "base: base.yaml\ngrid:\n  seed.0: [1]\n", []string{":3:", "seed"}},
		{"empty grid", "base: base.yaml\ngrid: {}\n", []string{":2:", "grid: want at least one config key with a list of values, got an empty mapping"}},
		{"no grid", "base: base.yaml\n", []string{"grid is missing"}},
		{"null grid", "base: base.yaml\ngrid:\nout: x\n", []string{":2:", "grid: want at least one config key with a list of values, got nothing"}},
		{"empty values", "base: base.yaml\ngrid:\n  seed: []\n", []string{":3:", "grid.seed: want a non-empty list of values, got an empty list"}},
		{"scalar values", "base: base.yaml\ngrid:\n  seed: 3\n", []string{":3:", "grid.seed", "non-empty list"}},
		{"duplicate value", "base: base.yaml\ngrid:\n  seed: [1, 2, 1]\n", []string{":3:", "value 1 appears twice"}},
		{"duplicate grid key", "base: base.yaml\ngrid:\n  seed: [1]\n  seed: [2]\n", []string{":4:", `duplicate key "seed"`}},
		{"missing base file", "base: nope.yaml\ngrid: {seed: [1]}\n", []string{":1:", "base: config", "nope.yaml not found"}},
		{"no base", "grid: {seed: [1]}\n", []string{"base is missing"}},
		{"not a mapping", "- base\n", []string{":1:", "want a mapping"}},
		{"malformed", "base: [\n", []string{"sweep.yaml"}},
		{"empty file", "", []string{"empty sweep file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeSweep(t, tc.text))
			if err == nil {
				t.Fatal("loaded")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range append(tc.want, "sweep.yaml") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q: want it to contain %q", msg, w)
				}
			}
		})
	}
}

// plan checks every task's config, so a grid value that does not fit the
// base fails at plan time with the task named.
func TestPlanChecksEveryTask(t *testing.T) {
	p := writeSweep(t, "base: base.yaml\ngrid:\n  seed: [1, 2]\n  attack.0.eps: [[0.01]]\n")
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	err = s.WritePlan()
	if err == nil || !strings.Contains(err.Error(), "task 0 (seed=1 attack.0.eps=[0.01])") || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("plan: %v", err)
	}
	if _, err := os.Stat(s.Dir); err == nil {
		t.Error("a failed plan left the sweep directory behind")
	}
}

// Planning twice is a no-op; a changed grid is refused once tasks have run,
// and every command notices that the file no longer matches the plan.
func TestPlanIsStable(t *testing.T) {
	p := writeSweep(t, "base: base.yaml\ngrid:\n  seed: [1, 2]\n")
	s, _ := Load(p)
	if err := s.WritePlan(); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(filepath.Join(s.Dir, PlanFile))
	if err := s.WritePlan(); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(filepath.Join(s.Dir, PlanFile))
	if string(first) != string(second) {
		t.Error("planning twice changed sweep.json")
	}
	plan, err := ReadPlan(s.Dir)
	if err != nil || len(plan.Tasks) != 2 || plan.Tasks[1].Overrides[0] != "seed=2" {
		t.Fatalf("plan %+v, %v", plan, err)
	}
	// A new grid before anything ran replaces the plan.
	os.WriteFile(p, []byte("base: base.yaml\ngrid:\n  seed: [1, 2, 3]\n"), 0o644)
	s, _ = Load(p)
	if err := s.WritePlan(); err != nil {
		t.Fatal(err)
	}
	// Once a task has run, it does not.
	os.MkdirAll(s.TaskDir(0), 0o755)
	os.WriteFile(p, []byte("base: base.yaml\ngrid:\n  seed: [5]\n"), 0o644)
	s, _ = Load(p)
	if err := s.WritePlan(); err == nil || !strings.Contains(err.Error(), "different plan") {
		t.Fatalf("replan over run tasks: %v", err)
	}
	if _, err := s.Status(); err == nil || !strings.Contains(err.Error(), "changed since it was planned") {
		t.Fatalf("status after the file changed: %v", err)
	}
}
