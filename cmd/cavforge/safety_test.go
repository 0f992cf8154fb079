package main

// Safe outputs (SPEC §2, §4, §7): cavforge never destroys what it did not
// write, runs started together never collide, an interrupted run leaves the
// disk as it was (valid cache entries aside), what a killed one left is
// removed by the next, and a rerun repeats what was run. Each test runs the
// real command line in a child process (see TestMain).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cavforge/cavforge/internal/testdemo"
)

// stagedDemo writes a small config with all three stages (about 10 s on
// the CPU), with its cache in cacheDir ("" for one next to the config).
func stagedDemo(t *testing.T, dir, cacheDir string) string {
	t.Helper()
	yaml := testdemo.Config{Name: "staged", Seed: 5, CacheDir: cacheDir, MaxImages: 12, BatchSize: 4}.YAML() + `tcav:
  targets: [zebra]
  concepts: [striped, dotted]
  random: {prefix: random500_, count: 4}
  layers: [block2, block3]
attack:
  - {concept: striped, target: zebra, layer: block3, eps: [0.0157], step: 0.004, steps: 20}
facets:
  - {target: zebra, facet: striped, facet_layers: [block2], batch: 2, size: 32, steps: 60, compare_attack: true}
`
	return testdemo.WriteFile(t, dir, "staged.yaml", yaml)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// --out naming a file, a link or a folder with anything in it is refused
// before any work, in one line, and the thing is left byte for byte.
func TestOutThatHoldsSomethingIsRefusedAndKeptByteForByte(t *testing.T) {
	root := t.TempDir()
	cfg := smallDemo(t, root)
	notes := filepath.Join(root, "notes.txt")
	os.WriteFile(notes, []byte("my notes\n"), 0o644)
	os.Symlink(notes, filepath.Join(root, "link-to-file"))
	os.Mkdir(filepath.Join(root, "empty"), 0o755)
	os.Symlink(filepath.Join(root, "empty"), filepath.Join(root, "link-to-dir"))
	os.Mkdir(filepath.Join(root, "folder"), 0o755)
	os.WriteFile(filepath.Join(root, "folder", "data.csv"), []byte("a,b\n1,2\n"), 0o644)
	os.Mkdir(filepath.Join(root, "finished"), 0o755)
	os.WriteFile(filepath.Join(root, "finished", "results.json"), []byte(`{"tcav": []}`+"\n"), 0o644)
	os.WriteFile(filepath.Join(root, "finished", "manifest.json"), []byte("{}\n"), 0o644)

	snapshot := func() map[string]string {
		m := map[string]string{}
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || strings.Contains(p, "cache") {
				return nil
			}
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				m[p] = "link " + l
			case fi.Mode().IsRegular():
				b, _ := os.ReadFile(p)
				m[p] = "file " + string(b)
			default:
				m[p] = "dir"
			}
			return nil
		})
		return m
	}
	before := snapshot()
	for _, c := range []struct{ out, says string }{
		{"notes.txt", "is an existing file"},
		{"link-to-file", "is a symbolic link"},
		{"link-to-dir", "is a symbolic link"},
		{"folder", "is not empty"},
		{"finished", "holds a finished run"},
	} {
		code, stdout, stderr := runCLI(t, root, "run", cfg, "--out", c.out)
		if code != 1 || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
			!strings.Contains(stderr, c.out) || !strings.Contains(stderr, c.says) {
			t.Errorf("--out %s: exit %d, stdout %q, stderr %q; want exit 1 and one line saying it %s", c.out, code, stdout, stderr, c.says)
		}
		if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("--out %s changed the disk:\nbefore %v\nafter  %v", c.out, before, after)
		}
	}
	// An empty folder is fine: the run goes into it.
	if code, _, stderr := runCLI(t, root, "run", cfg, "--out", "empty"); code != 0 {
		t.Fatalf("--out an empty folder: exit %d: %s", code, lastLine(stderr))
	}
	if _, err := os.Stat(filepath.Join(root, "empty", "results.json")); err != nil {
		t.Error(err)
	}
}

// Eight runs of one config started together: eight run directories, all
// with the same results.json.
func TestEightRunsOfOneConfigStartedTogetherAllSucceed(t *testing.T) {
	root := t.TempDir()
	cfg := smallDemo(t, root)
	// A first run fills the cache, so that the eight share the work of
	// reading it, not of computing it eight times on two cores.
	if code, _, stderr := runCLI(t, root, "run", cfg, "--out", "first"); code != 0 {
		t.Fatalf("first run: %s", lastLine(stderr))
	}
	want, _ := os.ReadFile(filepath.Join(root, "first", "results.json"))
	var cs []*cli
	for range 8 {
		cs = append(cs, startCLI(t, root, "run", cfg))
	}
	for i, c := range cs {
		if code := c.wait(t, 5*time.Minute); code != 0 {
			t.Errorf("run %d of 8: exit %d: %s", i, code, lastLine(c.errText()))
		}
	}
	dirs := listDir(t, filepath.Join(root, "runs", "rerun"))
	if len(dirs) != 8 {
		t.Fatalf("runs/rerun holds %v, want 8 run directories", dirs)
	}
	if !slices.IsSorted(dirs) {
		t.Errorf("run ids do not sort: %v", dirs)
	}
	for _, d := range dirs {
		got, err := os.ReadFile(filepath.Join(root, "runs", "rerun", d, "results.json"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: results.json differs from a lone run's (%v)", d, err)
		}
	}
	if l := litter(t, root); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// SIGINT or SIGTERM at several points of a real run: exit 130 or 143 within
// about a second, one line saying nothing was written, and no run
// directory, runs/ folder, partial directory or temp file afterwards; a
// second signal stops at once.
func TestSignalsStopARunAndLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("interrupts several runs")
	}
	cache := filepath.Join(t.TempDir(), "cache") // shared: later runs are faster
	points := []struct {
		sig   syscall.Signal
		after string // the log line to wait for
		delay time.Duration
		twice bool
	}{
		{syscall.SIGINT, "", 0, false}, // partial directory made, loading the model
		{syscall.SIGTERM, `"stage":"load model"`, 0, false},
		{syscall.SIGINT, `"stage":"extract activations"`, 0, false},
		{syscall.SIGTERM, `"stage":"tcav"`, 200 * time.Millisecond, false},    // attack steps
		{syscall.SIGINT, `"stage":"attack"`, 300 * time.Millisecond, false},   // facet directions
		{syscall.SIGTERM, `"stage":"attack"`, 1200 * time.Millisecond, false}, // facet render steps
		{syscall.SIGTERM, `"stage":"facets"`, 0, false},                       // report
		{syscall.SIGINT, `"stage":"attack"`, 300 * time.Millisecond, true},
	}
	for i, p := range points {
		dir := t.TempDir()
		cfg := stagedDemo(t, dir, cache)
		c := startCLI(t, dir, "run", cfg)
		if p.after == "" && !c.waitForFile(filepath.Join(dir, "runs", "staged", ".*.partial-*")) ||
			p.after != "" && !c.waitFor(p.after) {
			t.Fatalf("point %d: the run ended before %s: %s", i, p.after, lastLine(c.errText()))
		}
		time.Sleep(p.delay)
		sent := time.Now()
		c.cmd.Process.Signal(p.sig)
		if p.twice {
			time.Sleep(20 * time.Millisecond)
			c.cmd.Process.Signal(p.sig)
		}
		code := c.wait(t, time.Minute)
		took := c.ended.Sub(sent)
		if code == 0 {
			t.Logf("point %d (%v after %s): the run finished first", i, p.sig, p.after)
			continue
		}
		name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[p.sig]
		line := lastLine(c.errText())
		if code != 128+int(p.sig) || !strings.Contains(line, "interrupted by "+name+": nothing written to runs/staged/") {
			t.Errorf("point %d (%s after %q): exit %d, last line %q; want %d and the interruption", i, name, p.after, code, line, 128+int(p.sig))
		}
		limit := 3 * time.Second // about a second, on a loaded machine
		if p.twice {
			limit = time.Second
		}
		if took > limit {
			t.Errorf("point %d: exited %v after the signal, want under %v", i, took, limit)
		}
		if _, err := os.Stat(filepath.Join(dir, "runs")); err == nil {
			t.Errorf("point %d: runs/ left: %v", i, listDir(t, filepath.Join(dir, "runs")))
		}
		if l := litter(t, dir, cache); len(l) > 0 {
			t.Errorf("point %d (%s after %q): left behind %v", i, name, p.after, l)
		}
		t.Logf("point %d: %s after %q+%v: exit %d in %v", i, name, p.after, p.delay, code, took.Round(time.Millisecond))
	}
}

// deadTempName is the name a temp file of a process that is gone has, made
// like atomicfile makes them.
func deadTempName(t *testing.T, base string) string {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	h := sha256.Sum256([]byte(host))
	return "." + base + ".tmp-" + strconv.Itoa(c.Process.Pid) + "." + hex.EncodeToString(h[:4]) + "-12345"
}

// A run killed with SIGKILL leaves its partial directory, and one killed
// while writing a cache entry a temp file: the next run in the same place
// removes both, with a warning, and keeps a live process's temp file.
func TestNextRunRemovesWhatAKilledRunLeft(t *testing.T) {
	dir := t.TempDir()
	cfg := stagedDemo(t, dir, "")
	c := startCLI(t, dir, "run", cfg, "--stages", "tcav")
	if !c.waitFor(`"stage":"extract activations"`) {
		t.Fatalf("the run ended early: %s", lastLine(c.errText()))
	}
	c.cmd.Process.Kill()
	c.wait(t, time.Minute)
	partials, _ := filepath.Glob(filepath.Join(dir, "runs", "staged", ".*.partial-*"))
	if len(partials) != 1 {
		t.Fatalf("after kill -9: partial directories %v, want one", partials)
	}
	shard := filepath.Join(dir, "cache", "ab")
	os.MkdirAll(shard, 0o755)
	dead := filepath.Join(shard, deadTempName(t, "ab12.f32"))
	os.WriteFile(dead, []byte("half an entry"), 0o644)
	host, _ := os.Hostname()
	h := sha256.Sum256([]byte(host))
	live := filepath.Join(shard, ".ab34.f32.tmp-"+strconv.Itoa(os.Getpid())+"."+hex.EncodeToString(h[:4])+"-1")
	os.WriteFile(live, []byte("being written"), 0o644)

	code, _, stderr := runCLI(t, dir, "run", cfg, "--stages", "tcav")
	if code != 0 {
		t.Fatalf("next run: exit %d: %s", code, lastLine(stderr))
	}
	for _, p := range []string{partials[0], dead} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
		if !strings.Contains(stderr, filepath.Base(p)) {
			t.Errorf("no warning names %s:\n%s", filepath.Base(p), stderr)
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the temp file of a live process was removed: %v", err)
	}
}

// The manifest records --stages and every --set; rerun repeats the stages,
// so the rerun of a `--stages tcav` run is byte-identical.
func TestRerunOfAStagedRunRepeatsItsStagesAndOverrides(t *testing.T) {
	dir := t.TempDir()
	cfg := stagedDemo(t, dir, "")
	code, _, stderr := runCLI(t, dir, "run", cfg, "--stages", "tcav", "--set", "seed=6", "--set", "tcav.cav.epochs=20", "--out", "orig")
	if code != 0 {
		t.Fatalf("run: %s", lastLine(stderr))
	}
	code, stdout, stderr := runCLI(t, dir, "rerun", "orig", "--out", "again")
	if code != 0 {
		t.Fatalf("rerun: %s", lastLine(stderr))
	}
	if !strings.Contains(stdout, "byte-identical") {
		t.Errorf("rerun of a --stages tcav run: %s", stdout)
	}
	for _, d := range []string{"orig", "again"} {
		var m struct {
			Stages    []string `json:"stages"`
			Overrides []string `json:"overrides"`
		}
		b, _ := os.ReadFile(filepath.Join(dir, d, "manifest.json"))
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(m.Stages) != "[tcav]" || fmt.Sprint(m.Overrides) != "[seed=6 tcav.cav.epochs=20]" {
			t.Errorf("%s/manifest.json: stages %v, overrides %v; want [tcav] and the two --set", d, m.Stages, m.Overrides)
		}
	}
}

// --stages facets with compare_attack needs the attack's poisoned set: an
// error at validation that names the key, unless facets.N.poisoned_from
// names an earlier run whose poisoned set it then uses.
func TestStagesFacetsNeedsTheAttackOrAnEarlierRunsPoisonedSet(t *testing.T) {
	dir := t.TempDir()
	cfg := stagedDemo(t, dir, "")
	for _, cmd := range []string{"validate", "run"} {
		code, stdout, stderr := runCLI(t, dir, cmd, cfg, "--stages", "facets")
		if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
			!strings.Contains(stderr, "facets.0.compare_attack") || !strings.Contains(stderr, "facets.0.poisoned_from") {
			t.Errorf("%s --stages facets: exit %d, stdout %q, stderr %q; want one line naming the key", cmd, code, stdout, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "runs")); err == nil {
		t.Error("a run refused at validation left runs/")
	}
	if code, _, stderr := runCLI(t, dir, "run", cfg, "--stages", "attack", "--out", "attacked"); code != 0 {
		t.Fatalf("attack run: %s", lastLine(stderr))
	}
	code, _, stderr := runCLI(t, dir, "run", cfg, "--stages", "facets", "--set", "facets.0.poisoned_from=attacked", "--out", "facets")
	if code != 0 {
		t.Fatalf("--stages facets with poisoned_from: %s", lastLine(stderr))
	}
	var res struct {
		Attack []any `json:"attack"`
		Facets []struct {
			Attacked     []string `json:"attacked"`
			AttackImages string   `json:"attack_images"`
		} `json:"facets"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "facets", "results.json"))
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Attack) != 0 || len(res.Facets) != 1 || len(res.Facets[0].Attacked) != 2 ||
		!strings.HasPrefix(res.Facets[0].AttackImages, filepath.Join(dir, "attacked", "attack")) {
		t.Errorf("results: %s", b)
	}
	// A run directory without that attack is refused up front.
	code, _, stderr = runCLI(t, dir, "validate", cfg, "--stages", "facets", "--set", "facets.0.poisoned_from=facets")
	if code != 1 || !strings.Contains(stderr, "facets.0.poisoned_from") || !strings.Contains(stderr, "no attack on concept") {
		t.Errorf("poisoned_from a run without the attack: exit %d, %s", code, stderr)
	}
}

// The smaller points of issue 10: each a one-line error (or warning) where
// there was silence.
func TestSmallMistakesAreNamed(t *testing.T) {
	dir := t.TempDir()
	cfg := smallDemo(t, dir)
	labels := filepath.Join(dir, "labels.txt")
	os.WriteFile(labels, []byte("zebra\nzebra\nhoneycomb\nplain\n"), 0o644)
	sweepFile := filepath.Join(dir, "s.yaml")
	os.WriteFile(sweepFile, []byte("base: c.yaml\ngrid:\n  seed: [0, 1]\n"), 0o644)
	cases := []struct {
		name  string
		args  []string
		says  []string
		clean bool // stdout empty
	}{
		{"a failed run", []string{"run", cfg, "--set", "tcav.layers=[nosuch]"}, []string{"nosuch"}, true},
		{"--log-format xml", []string{"run", cfg, "--log-format", "xml"}, []string{"--log-format", "xml"}, true},
		{"--log-format xml on validate", []string{"validate", cfg, "--log-format", "xml"}, []string{"--log-format"}, true},
		{"a class_sets typo", []string{"validate", cfg, "--set", "tcav.class_sets.zebraa=zebra"}, []string{"tcav.class_sets.zebraa", "not a target"}, true},
		{"an ambiguous label", []string{"validate", cfg, "--set", "model.labels=" + labels}, []string{`"zebra" names 2 classes`, "index"}, true},
		{"--task -1", []string{"sweep", "run", sweepFile, "--task", "-1"}, []string{"--task -1 is out of range", "0..1"}, true},
		{"bench --seconds -1", []string{"bench", testdemo.Path("model.pt"), "--layer", "block3", "--seconds", "-1"}, []string{"--seconds"}, true},
		{"bench --batches 0", []string{"bench", testdemo.Path("model.pt"), "--layer", "block3", "--batches", "4,0"}, []string{"--batches", `"0"`}, true},
	}
	for _, c := range cases {
		code, stdout, stderr := runCLI(t, dir, c.args...)
		line := lastLine(stderr)
		ok := code == 1 && (!c.clean || stdout == "")
		for _, s := range c.says {
			ok = ok && strings.Contains(line, s)
		}
		if !ok {
			t.Errorf("%s: exit %d, stdout %q, last line %q; want exit 1 and a line saying %q", c.name, code, stdout, line, c.says)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "runs")); err == nil {
		t.Errorf("a failed run left %v", listDir(t, filepath.Join(dir, "runs")))
	}

	// Duplicate names are fine while no target uses one; validate says so.
	code, _, stderr := runCLI(t, dir, "validate", cfg, "--set", "model.labels="+labels,
		"--set", "tcav.targets=[0]", "--set", "tcav.class_sets.0=zebra")
	if code != 0 || !strings.Contains(stderr, "names that stand for more than one class: zebra;") {
		t.Errorf("validate with duplicate labels, target by index: exit %d: %s", code, stderr)
	}
}

// NaN or Inf in the class gradients is named as such, not as activations.
func TestNonFiniteGradientIsCalledAGradient(t *testing.T) {
	dir := t.TempDir()
	yaml := `name: nan
device: cpu
cache_dir: cache
model:
  path: ` + testdemo.Path("..", "models", "nan_gradient.pt") + `
  labels: ` + testdemo.Path("labels.txt") + `
  input: {size: [16, 16], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
data: {root: ` + testdemo.Path("data") + `, max_images: 4, batch_size: 4}
tcav: {targets: [zebra], concepts: [striped], random: {prefix: random500_, count: 2}, layers: [feat]}
`
	code, _, stderr := runCLI(t, dir, "run", testdemo.WriteFile(t, dir, "nan.yaml", yaml))
	line := lastLine(stderr)
	if code != 1 || !strings.Contains(line, "gradient") || !strings.Contains(line, "NaN or Inf") || !strings.Contains(line, "zebra") {
		t.Errorf("exit %d, last line %q; want a line naming the gradient, its NaN or Inf and the image set", code, line)
	}
}

// SIGTERM (Slurm's time limit, scancel) on a sweep task: exit 143, the task
// is marked failed with the reason, nothing partial is left, and the task
// runs again from scratch.
func TestSweepTaskStoppedBySIGTERMIsMarkedAndLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	stagedDemo(t, dir, "")
	sweepFile := filepath.Join(dir, "s.yaml")
	os.WriteFile(sweepFile, []byte("base: staged.yaml\ngrid:\n  seed: [0, 1]\n"), 0o644)
	c := startCLI(t, dir, "sweep", "run", sweepFile, "--task", "1")
	if !c.waitFor(`"stage":"tcav"`) {
		t.Fatalf("the task ended early: %s", lastLine(c.errText()))
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t, time.Minute); code != 143 {
		t.Errorf("exit %d, want 143: %s", code, lastLine(c.errText()))
	}
	code, stdout, stderr := runCLI(t, dir, "sweep", "status", sweepFile, "--json")
	var st struct {
		Tasks []struct {
			State, Detail string
		} `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || code != 0 || len(st.Tasks) != 2 {
		t.Fatalf("status: exit %d, %v: %s %s", code, err, stdout, stderr)
	}
	if st.Tasks[1].State != "failed" || !strings.Contains(st.Tasks[1].Detail, "interrupted by SIGTERM (Slurm time limit or scancel?)") {
		t.Errorf("task 1 after SIGTERM: %+v", st.Tasks[1])
	}
	if l := litter(t, dir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
	if code, _, stderr := runCLI(t, dir, "sweep", "run", sweepFile, "--task", "1"); code != 0 {
		t.Errorf("running the task again: %s", lastLine(stderr))
	}
}
