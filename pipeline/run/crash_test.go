package run_test

// Crash safety (SPEC §4, §7): a run killed with SIGKILL at any point leaves
// no run directory and no damaged cache entry, and running it again gives
// the results.json of an uninterrupted run, byte for byte; several runs at
// once on one cache directory all get the right result.
//
// The runs to kill are this test binary re-executed as TestCrashChild, which
// runs one config and exits. Kill points are drawn from a seeded generator
// (CAVFORGE_CRASH_SEED, default 1) over the duration of an uninterrupted
// run, measured first.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/run"
)

const (
	childConfigEnv = "CAVFORGE_CRASH_CHILD_CONFIG"
	childOutEnv    = "CAVFORGE_CRASH_CHILD_OUT"
	// childPauseEnv=N: the child stops before renaming its N-th cache
	// entry into place and prints "paused" (cache.PauseBeforeRename).
	childPauseEnv = "CAVFORGE_CRASH_CHILD_PAUSE"
)

// TestCrashChild is the process the crash tests start and kill; it does
// nothing in a normal test run. It prints "ready" just before the run starts
// and one line per finished stage.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(childConfigEnv)
	if path == "" {
		t.Skip("helper process of the crash tests")
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(os.Stdout)
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true, DisableTimestamp: true})
	if n, err := strconv.Atoi(os.Getenv(childPauseEnv)); err == nil {
		cache.PauseBeforeRename(n, func() {
			fmt.Println("paused")
			select {} // until killed
		})
	}
	fmt.Println("ready")
	if _, err := run.Run(cfg, run.Options{Out: os.Getenv(childOutEnv), Log: log}); err != nil {
		t.Fatal(err)
	}
}

// crashConfig writes the small experiment the crash tests run: 12 images a
// set, 2 concepts, 3 random sets, one layer.
func crashConfig(t *testing.T, cacheDir string, seed int) string {
	t.Helper()
	yaml := testdemo.Config{Name: "crash", Seed: seed, CacheDir: cacheDir, MaxImages: 12, BatchSize: 8}.YAML() + `tcav:
  targets: [zebra]
  concepts: [striped, dotted]
  random: {prefix: random500_, count: 3}
  layers: [block3]
`
	return testdemo.WriteFile(t, t.TempDir(), "crash.yaml", yaml)
}

var (
	refMu   sync.Mutex
	refJSON = map[int][]byte{}
)

// reference is results.json of an uninterrupted in-process run on a cache
// of its own.
func reference(t *testing.T, seed int) []byte {
	t.Helper()
	refMu.Lock()
	defer refMu.Unlock()
	if b, ok := refJSON[seed]; ok {
		return b
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	runInProcess(t, crashConfig(t, filepath.Join(dir, "cache"), seed), out)
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	refJSON[seed] = b
	return b
}

func runInProcess(t *testing.T, cfgPath, out string) {
	t.Helper()
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	if _, err := run.Run(cfg, run.Options{Out: out, Log: l}); err != nil {
		t.Fatal(err)
	}
}

// child is a running TestCrashChild.
type child struct {
	cmd    *exec.Cmd
	ready  chan time.Time // when the run starts
	mu     sync.Mutex
	start  time.Time
	lines  []string // its log so far
	stages []event  // the stages it reported done, when
	done   chan error
}

type event struct {
	stage string
	at    time.Duration // since the run started
}

func startChild(t *testing.T, cfgPath, out string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childConfigEnv+"="+cfgPath, childOutEnv+"="+out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, ready: make(chan time.Time, 1), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			now := time.Now()
			c.mu.Lock()
			if line == "ready" {
				c.start = now
				c.ready <- now
			} else {
				c.lines = append(c.lines, line)
				if m := stageField.FindStringSubmatch(line); m != nil {
					c.stages = append(c.stages, event{strings.Trim(m[1], `"`), now.Sub(c.start)})
				}
			}
			c.mu.Unlock()
		}
		err := cmd.Wait()
		if err != nil {
			c.mu.Lock()
			err = fmt.Errorf("%w: %s %s", err, strings.Join(c.lines[max(0, len(c.lines)-5):], " | "), strings.TrimSpace(stderr.String()))
			c.mu.Unlock()
		}
		c.done <- err
	}()
	return c
}

var stageField = regexp.MustCompile(`stage=("[^"]*"|\S+)`)

// lastStage is the last stage the child's log reports as done.
func (c *child) lastStage() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.stages) == 0 {
		return "(none)"
	}
	return c.stages[len(c.stages)-1].stage
}

func (c *child) waitReady(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-c.ready:
		return at
	case err := <-c.done:
		t.Fatalf("child exited before its run started: %v", err)
	case <-time.After(2 * time.Minute):
		c.cmd.Process.Kill()
		t.Fatal("child not ready after 2 minutes")
	}
	return time.Time{}
}

// checkCache reads every entry under dir through cache.Get and fails the
// test on any entry that is missing, unreadable or logs a warning (a
// damaged entry is logged and removed by Get). It returns the number of
// entries and of stray temp files (left by a kill before a rename; Get
// never opens them).
func checkCache(t *testing.T, dir string) (entries, temps int) {
	t.Helper()
	var warnings bytes.Buffer
	l := logrus.New()
	l.SetOutput(&warnings)
	c := cache.Cache{Dir: dir, Log: l}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if p == dir && os.IsNotExist(err) {
			return filepath.SkipDir // killed before the first entry
		}
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if strings.HasPrefix(name, ".") {
			temps++
			return nil
		}
		key, ok := strings.CutSuffix(name, ".f32")
		if !ok {
			t.Errorf("unexpected file in the cache: %s", p)
			return nil
		}
		entries++
		if _, _, ok, err := c.Get(key); err != nil || !ok {
			t.Errorf("cache entry %s: ok=%v, err=%v", p, ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if warnings.Len() > 0 {
		t.Errorf("damaged cache entries:\n%s", warnings.String())
	}
	return entries, temps
}

func crashSeed(t *testing.T) uint64 {
	if s := os.Getenv("CAVFORGE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CAVFORGE_CRASH_SEED=%q", s)
		}
		return v
	}
	return 1
}

// killWindows are the parts of a run to kill in, from an uninterrupted
// run's stage events: while activations and CAVs are written to the cache,
// while the report is written into the temporary run directory, between the
// report and the rename, and anywhere at all. A window starts at a stage
// event (after, "" for the start of the run), so that kill points follow
// the run however fast the machine is today.
func killWindows(stages []event, total time.Duration) []window {
	var ws []window
	prev := event{}
	for _, e := range stages {
		switch e.stage {
		case "extract activations", "fit CAVs", "report":
			ws = append(ws, window{"during " + e.stage, prev.stage, e.at - prev.at})
		}
		prev = e
	}
	return append(ws, window{"after the report, before exit", prev.stage, total - prev.at}, window{"anywhere", "", total})
}

type window struct {
	name   string
	after  string        // the stage event it starts at
	length time.Duration // in the uninterrupted run
}

// waitStage waits until the child reports stage done (true) or exits.
func (c *child) waitStage(stage string) bool {
	for {
		c.mu.Lock()
		for _, e := range c.stages {
			if e.stage == stage {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
		select {
		case err := <-c.done:
			c.done <- err
			return false
		case <-time.After(time.Millisecond):
		}
	}
}

func TestKillNineAtRandomPointsThenRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills several processes")
	}
	want := reference(t, 3)

	// An uninterrupted child: the same bytes as in-process, and when its
	// stages end, to draw kill points from.
	dir := t.TempDir()
	c := startChild(t, crashConfig(t, filepath.Join(dir, "cache"), 3), filepath.Join(dir, "run"))
	start := c.waitReady(t)
	if err := <-c.done; err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	if got, _ := os.ReadFile(filepath.Join(dir, "run", "results.json")); !bytes.Equal(got, want) {
		t.Fatal("a run in a child process wrote another results.json than in-process")
	}
	windows := killWindows(c.stages, total)

	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("cold run takes %v; killing %d runs (CAVFORGE_CRASH_SEED=%d)", total.Round(time.Millisecond), len(windows), seed)
	for k, w := range windows {
		dir := t.TempDir()
		cacheDir, out := filepath.Join(dir, "cache"), filepath.Join(dir, "run")
		cfgPath := crashConfig(t, cacheDir, 3)
		delay := time.Duration(rng.Float64() * float64(w.length))
		c := startChild(t, cfgPath, out)
		started := c.waitReady(t)
		if w.after == "" || c.waitStage(w.after) {
			time.Sleep(delay)
		}
		at := time.Since(started)
		exitedFirst := false
		select {
		case <-c.done:
			exitedFirst = true
		default:
			c.cmd.Process.Kill() // SIGKILL
			<-c.done
		}
		stage := c.lastStage()

		// Nothing or everything at the run directory.
		if _, err := os.Stat(out); err == nil {
			got, _ := os.ReadFile(filepath.Join(out, "results.json"))
			if !bytes.Equal(got, want) {
				t.Fatalf("kill %d: a run directory exists with other results", k)
			}
			exitedFirst = true
		}
		entries, temps := checkCache(t, cacheDir)

		again := filepath.Join(dir, "again")
		runInProcess(t, cfgPath, again)
		got, err := os.ReadFile(filepath.Join(again, "results.json"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("kill %d at %v: the rerun's results.json differs from an uninterrupted run's", k, at)
		}
		// The next run in the same place removed what the killed one left.
		if _, temps := checkCache(t, cacheDir); temps != 0 {
			t.Errorf("kill %d: %d temp files of the killed run still in the cache after the next run", k, temps)
		}
		if partials, _ := filepath.Glob(filepath.Join(dir, run.PartialPrefix(out)+"*")); len(partials) > 0 {
			t.Errorf("kill %d: %v still there after the next run", k, partials)
		}
		what := "killed"
		if exitedFirst {
			what = "finished before the kill"
		}
		t.Logf("run %d (%s): %s at %v (last stage done: %s); cache then had %d intact entries, %d stray temp files; rerun identical",
			k, w.name, what, at.Round(time.Millisecond), stage, entries, temps)
	}
}

func TestConcurrentRunsShareOneCache(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	seeds := []int{3, 3, 4}
	want := map[int][]byte{}
	for _, s := range seeds {
		want[s] = reference(t, s)
	}
	dir := t.TempDir()
	cacheDir := filepath.Join(dir, "cache")
	children := make([]*child, len(seeds))
	for i, s := range seeds {
		children[i] = startChild(t, crashConfig(t, cacheDir, s), filepath.Join(dir, fmt.Sprint("run", i)))
	}
	for i, c := range children {
		if err := <-c.done; err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		got, _ := os.ReadFile(filepath.Join(dir, fmt.Sprint("run", i), "results.json"))
		if !bytes.Equal(got, want[seeds[i]]) {
			t.Errorf("run %d (seed %d) on the shared cache: results.json differs from a run on its own cache", i, seeds[i])
		}
	}
	entries, temps := checkCache(t, cacheDir)
	if temps != 0 {
		t.Errorf("%d temp files left by runs that finished", temps)
	}
	t.Logf("%d runs at once (seeds %v) on one cache: all correct; %d intact entries", len(seeds), seeds, entries)
}

// A kill that certainly lands mid-write: the child stops with a complete
// temp file of its N-th cache entry not yet renamed into place, and is
// killed there. The temp file is in the cache and no entry under its name;
// the next run gives the uninterrupted results and removes the temp file.
func TestKillNineMidWriteLeavesOnlyATempFileThatTheNextRunRemoves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills processes")
	}
	want := reference(t, 3)
	for _, n := range []int{1, 4} {
		dir := t.TempDir()
		cacheDir, out := filepath.Join(dir, "cache"), filepath.Join(dir, "run")
		cfgPath := crashConfig(t, cacheDir, 3)
		t.Setenv(childPauseEnv, strconv.Itoa(n))
		c := startChild(t, cfgPath, out)
		c.waitReady(t)
		deadline := time.Now().Add(2 * time.Minute)
		for !c.saw("paused") {
			select {
			case err := <-c.done:
				t.Fatalf("entry %d: the child ended without pausing: %v", n, err)
			case <-time.After(5 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("entry %d: the child did not pause within 2 minutes", n)
			}
		}
		temps := tempFiles(t, cacheDir)
		if len(temps) != 1 {
			t.Fatalf("entry %d: %d temp files in the cache while the writer is paused, want 1: %v", n, len(temps), temps)
		}
		c.cmd.Process.Kill() // SIGKILL, mid-write
		<-c.done
		if _, err := os.Stat(temps[0]); err != nil {
			t.Fatalf("entry %d: the temp file is gone after SIGKILL: %v", n, err)
		}
		entries, stray := checkCache(t, cacheDir)
		if entries < n-1 || stray != 1 {
			t.Errorf("entry %d: after the kill, %d intact entries and %d temp files, want at least %d and 1", n, entries, stray, n-1)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("entry %d: a run directory exists after a kill mid-run", n)
		}
		t.Setenv(childPauseEnv, "")
		again := filepath.Join(dir, "again")
		runInProcess(t, cfgPath, again)
		if got, err := os.ReadFile(filepath.Join(again, "results.json")); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("entry %d: the rerun's results.json differs from an uninterrupted run's", n)
		}
		if left := tempFiles(t, cacheDir); len(left) != 0 {
			t.Errorf("entry %d: the next run left the killed writer's temp file: %v", n, left)
		}
	}
}

func (c *child) saw(line string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if l == line {
			return true
		}
	}
	return false
}

// tempFiles lists the hidden temp files under the cache directory.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), ".tmp-") {
			found = append(found, p)
		}
		return nil
	})
	return found
}
