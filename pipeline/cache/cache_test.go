package cache

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
)

func newCache(t *testing.T) (Cache, *logtest.Hook) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	return Cache{Dir: t.TempDir(), Log: log}, hook
}

func warnings(hook *logtest.Hook) []*logrus.Entry {
	var w []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			w = append(w, e)
		}
	}
	return w
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

func TestKey(t *testing.T) {
	k := Key("model", "layer")
	if len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
		t.Errorf("Key = %q, want 64 lowercase hex digits", k)
	}
	if Key("model", "layer") != k {
		t.Error("Key is not deterministic")
	}
	distinct := [][]string{{"ab", "c"}, {"a", "bc"}, {"abc"}, {"abc", ""}, {}, {""}}
	seen := map[string][]string{}
	for _, parts := range distinct {
		k := Key(parts...)
		if prev, dup := seen[k]; dup {
			t.Errorf("Key(%q) == Key(%q)", parts, prev)
		}
		seen[k] = parts
	}
}

func TestRoundTrip(t *testing.T) {
	c, hook := newCache(t)
	tests := []struct {
		name  string
		shape []int64
		data  []float32
	}{
		{"scalar", []int64{}, []float32{3.5}},
		{"empty", []int64{0, 7}, []float32{}},
		{"vector with specials", []int64{6}, []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.SmallestNonzeroFloat32}},
		{"3d", []int64{2, 3, 4}, func() []float32 {
			d := make([]float32, 24)
			for i := range d {
				d[i] = float32(i) * 0.1
			}
			return d
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := Key(tc.name)
			if _, _, ok, err := c.Get(key); ok || err != nil {
				t.Fatalf("Get before Put: ok=%v err=%v", ok, err)
			}
			if err := c.Put(key, tc.shape, tc.data); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(c.Dir, key[:2], key+".f32")); err != nil {
				t.Errorf("entry not sharded by key prefix: %v", err)
			}
			shape, data, ok, err := c.Get(key)
			if !ok || err != nil {
				t.Fatalf("Get after Put: ok=%v err=%v", ok, err)
			}
			if !slices.Equal(shape, tc.shape) || !sameBits(data, tc.data) {
				t.Errorf("got %v %v, want %v %v", shape, data, tc.shape, tc.data)
			}
		})
	}
	if w := warnings(hook); len(w) != 0 {
		t.Errorf("unexpected warnings: %v", w)
	}
}

func TestPutErrors(t *testing.T) {
	c, _ := newCache(t)
	tests := []struct {
		name  string
		key   string
		shape []int64
		data  []float32
	}{
		{"shape mismatch", Key("a"), []int64{2, 2}, make([]float32, 3)},
		{"negative dim", Key("a"), []int64{-1}, nil},
		{"path in key", "../../etc/passwd", []int64{1}, make([]float32, 1)},
		{"uppercase key", "ABCDEF", []int64{1}, make([]float32, 1)},
		{"short key", "ab", []int64{1}, make([]float32, 1)},
	}
	for _, tc := range tests {
		if err := c.Put(tc.key, tc.shape, tc.data); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if err := (Cache{}).Put(Key("a"), []int64{1}, []float32{1}); err == nil {
		t.Error("Put with no Dir: no error")
	}
}

func TestDamagedEntryIsAWarnedMiss(t *testing.T) {
	shape := []int64{4, 5}
	data := make([]float32, 20)
	for i := range data {
		data[i] = float32(i) + 0.25
	}
	hdrLen := 8 + 4 + 4 + 8*len(shape) + 4 + 64
	tests := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"payload bit flip", func(b []byte) []byte { b[len(b)-3] ^= 0x10; return b }},
		{"shape changed", func(b []byte) []byte { b[16], b[24] = 5, 4; return b }},
		{"checksum flip", func(b []byte) []byte { b[hdrLen] ^= 1; return b }},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"future version", func(b []byte) []byte { b[8] = 2; return b }},
		{"truncated payload", func(b []byte) []byte { return b[:len(b)-7] }},
		{"truncated header", func(b []byte) []byte { return b[:20] }},
		{"empty file", func(b []byte) []byte { return b[:0] }},
		{"extra bytes", func(b []byte) []byte { return append(b, 0, 0, 0, 0) }},
		{"huge key length", func(b []byte) []byte { b[8+4+4+8*len(shape)+3] = 0xff; return b }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, hook := newCache(t)
			key := Key(tc.name)
			if err := c.Put(key, shape, data); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(c.Dir, key[:2], key+".f32")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, _, ok, err := c.Get(key); ok || err != nil {
				t.Fatalf("Get of damaged entry: ok=%v err=%v, want a miss", ok, err)
			}
			w := warnings(hook)
			if len(w) != 1 || !strings.Contains(w[0].Message, p) {
				t.Errorf("warnings %v, want one naming %s", w, p)
			}
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("damaged entry not removed: %v", err)
			}
			// Recomputed through GetOrCompute.
			calls := 0
			s, d, err := c.GetOrCompute(key, func() ([]int64, []float32, error) { calls++; return shape, data, nil })
			if err != nil || calls != 1 || !slices.Equal(s, shape) || !sameBits(d, data) {
				t.Errorf("GetOrCompute after damage: calls=%d err=%v", calls, err)
			}
		})
	}
}

func TestEntryUnderWrongKeyIsAMiss(t *testing.T) {
	c, hook := newCache(t)
	a, b := Key("a"), Key("b")
	if err := c.Put(a, []int64{1}, []float32{1}); err != nil {
		t.Fatal(err)
	}
	pb := filepath.Join(c.Dir, b[:2], b+".f32")
	os.MkdirAll(filepath.Dir(pb), 0o755)
	if err := os.Rename(filepath.Join(c.Dir, a[:2], a+".f32"), pb); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := c.Get(b); ok || err != nil {
		t.Fatalf("entry renamed to another key: ok=%v err=%v", ok, err)
	}
	if len(warnings(hook)) != 1 {
		t.Error("no warning for entry under the wrong key")
	}
}

func TestGetOrCompute(t *testing.T) {
	c, _ := newCache(t)
	key := Key("gc")
	calls := 0
	compute := func() ([]int64, []float32, error) { calls++; return []int64{2}, []float32{1, 2}, nil }
	for range 3 {
		s, d, err := c.GetOrCompute(key, compute)
		if err != nil || !slices.Equal(s, []int64{2}) || !slices.Equal(d, []float32{1, 2}) {
			t.Fatalf("got %v %v %v", s, d, err)
		}
	}
	if calls != 1 {
		t.Errorf("compute ran %d times, want 1", calls)
	}
	boom := errors.New("boom")
	if _, _, err := c.GetOrCompute(Key("fails"), func() ([]int64, []float32, error) { return nil, nil, boom }); !errors.Is(err, boom) {
		t.Errorf("error %v, want boom", err)
	}
	if _, _, ok, _ := c.Get(Key("fails")); ok {
		t.Error("failed computation was cached")
	}
}

// Writers race on one key with different (self-consistent) values; every
// successful Get must return exactly one writer's value, never a mix.
func TestConcurrentPutGet(t *testing.T) {
	c, hook := newCache(t)
	key := Key("contended")
	const writers, rounds, n = 16, 20, 4096
	value := func(w int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(w*n + i)
		}
		return d
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds*2)
	for w := range writers {
		wg.Go(func() {
			mine := value(w)
			for range rounds {
				if err := c.Put(key, []int64{n}, mine); err != nil {
					errs <- err
					return
				}
				s, d, ok, err := c.Get(key)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					errs <- errors.New("miss after Put")
					return
				}
				if len(s) != 1 || s[0] != n || len(d) != n {
					errs <- fmt.Errorf("shape %v, %d values", s, len(d))
					return
				}
				who := int(d[0]) / n
				if who < 0 || who >= writers || !slices.Equal(d, value(who)) {
					errs <- fmt.Errorf("torn value starting %v", d[:4])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if w := warnings(hook); len(w) != 0 {
		t.Errorf("warnings under contention: %v", w[0].Message)
	}
	ents, _ := os.ReadDir(filepath.Join(c.Dir, key[:2]))
	if len(ents) != 1 {
		t.Errorf("%d files in shard dir, want 1 (temp files left behind?)", len(ents))
	}
}

// crashEnv makes the test binary, re-run as a child, write an entry and then
// die instead of finishing.
const crashEnv = "CAVFORGE_CACHE_CRASH_CHILD"

func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		t.Skip("helper for TestCrashMidWrite")
	}
	c := Cache{Dir: os.Getenv("CAVFORGE_CACHE_DIR")}
	shape, data := crashValue(mode)
	if mode == "before-rename" {
		testHookBeforeRename = func() { os.Exit(3) }
	}
	for { // killed from outside in "loop" mode
		if err := c.Put(Key("crash"), shape, data); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func crashValue(mode string) ([]int64, []float32) {
	n := 1 << 20
	if mode == "before-rename" {
		n = 1000
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(i % 9973)
	}
	return []int64{int64(n)}, d
}

func child(t *testing.T, dir, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode, "CAVFORGE_CACHE_DIR="+dir)
	return cmd
}

func TestCrashMidWrite(t *testing.T) {
	t.Run("dies before rename", func(t *testing.T) {
		c, hook := newCache(t)
		key := Key("crash")
		// An older good entry must survive the crash untouched.
		if err := c.Put(key, []int64{1}, []float32{42}); err != nil {
			t.Fatal(err)
		}
		out, err := child(t, c.Dir, "before-rename").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("child: %v, want exit 3; output:\n%s", err, out)
		}
		ents, _ := os.ReadDir(filepath.Join(c.Dir, key[:2]))
		temps := 0
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				temps++
			}
		}
		if temps != 1 {
			t.Errorf("want the crashed write's temp file left behind, found %d", temps)
		}
		s, d, ok, err := c.Get(key)
		if !ok || err != nil || !slices.Equal(s, []int64{1}) || !slices.Equal(d, []float32{42}) {
			t.Errorf("after crash got %v %v ok=%v err=%v, want the old entry", s, d, ok, err)
		}
		// The next run removes the dead writer's temp file, and only that:
		// one of this live process stays.
		f, undo, err := atomicfile.CreateTemp(filepath.Join(c.Dir, key[:2]), "live.f32")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		defer undo.Now()
		removed, err := c.RemoveLeftovers()
		if err != nil || len(removed) != 1 || !strings.Contains(removed[0], ".tmp-") {
			t.Errorf("RemoveLeftovers: %v, %v; want the crashed write's temp file", removed, err)
		}
		if _, err := os.Stat(f.Name()); err != nil {
			t.Errorf("a live process's temp file was removed: %v", err)
		}
		if _, _, ok, _ := c.Get(key); !ok {
			t.Error("the entry went with the leftovers")
		}
		if w := warnings(hook); len(w) != 0 {
			t.Errorf("warnings: %v", w[0].Message)
		}
	})
	t.Run("killed at random points", func(t *testing.T) {
		shape, data := crashValue("loop")
		for i, delay := range []time.Duration{0, 5, 20, 60, 150} {
			c, hook := newCache(t)
			cmd := child(t, c.Dir, "loop")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			s, d, ok, err := c.Get(Key("crash"))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("killed after %v: entry present=%v", delay*time.Millisecond, ok)
			if ok && (!slices.Equal(s, shape) || !slices.Equal(d, data)) {
				t.Errorf("kill %d: readable entry with wrong contents", i)
			}
			if w := warnings(hook); len(w) != 0 {
				t.Errorf("kill %d: a partial entry was visible: %v", i, w[0].Message)
			}
		}
	})
}
