package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/internal/testdemo"
)

// Smoke runs of every command a user types, on the real binary (this test
// binary as main), the real libtorch and the demo model: exit code, what
// stdout must hold, and the one line on stderr when the input is bad.

func oneLineErr(t *testing.T, what string, code int, stderr string, names ...string) {
	t.Helper()
	if code == 0 {
		t.Errorf("%s: exit 0, want non-zero", what)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Errorf("%s: stderr is %d lines, want one:\n%s", what, len(lines), stderr)
	}
	for _, n := range names {
		if !strings.Contains(stderr, n) {
			t.Errorf("%s: stderr %q does not name %q", what, strings.TrimSpace(stderr), n)
		}
	}
}

func TestVersionNamesCavforgeGoAndTheLinkedLibtorch(t *testing.T) {
	code, out, stderr := runCLI(t, t.TempDir(), "version")
	if code != 0 {
		t.Fatalf("version: exit %d: %s", code, stderr)
	}
	torchVersion := ""
	if b, err := os.ReadFile("../../build/torch-version.txt"); err == nil {
		torchVersion = strings.TrimSpace(string(b))
	}
	for _, want := range []string{"cavforge " + Version, "go       " + runtime.Version(), "libtorch " + torchVersion, "cuda "} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	code, _, stderr = runCLI(t, t.TempDir(), "version", "extra")
	oneLineErr(t, "version with an argument", code, stderr, "takes no arguments")
}

func TestLayersListsTheDemoModelsModulesWithTheirShapes(t *testing.T) {
	model := testdemo.Path("model.pt")
	code, out, stderr := runCLI(t, t.TempDir(), "layers", model, "--input", "3,64,64")
	if code != 0 {
		t.Fatalf("layers: exit %d: %s", code, stderr)
	}
	// The demo model halves the size in each block: 16×32×32, 32×16×16, 64×8×8.
	for _, want := range []string{`(?m)^block1\s+\[16 32 32\]$`, `(?m)^block2\s+\[32 16 16\]$`, `(?m)^block1\.conv\s+\[16 64 64\]$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("layers output does not match %s:\n%s", want, out)
		}
	}
	code, out, stderr = runCLI(t, t.TempDir(), "layers", model, "--input", "3,64,64", "--json")
	if code != 0 {
		t.Fatalf("layers --json: exit %d: %s", code, stderr)
	}
	var layers []struct {
		Path  string  `json:"path"`
		Shape []int64 `json:"shape"`
	}
	if err := json.Unmarshal([]byte(out), &layers); err != nil {
		t.Fatalf("layers --json is not JSON: %v\n%s", err, out)
	}
	shapes := map[string][]int64{}
	for _, l := range layers {
		shapes[l.Path] = l.Shape
	}
	if s := shapes["block3"]; len(s) != 3 || s[0] != 64 || s[1] != 8 || s[2] != 8 {
		t.Errorf("layers --json: block3 shape %v, want [64 8 8]", s)
	}

	code, _, stderr = runCLI(t, t.TempDir(), "layers", filepath.Join(t.TempDir(), "nosuch.pt"))
	oneLineErr(t, "layers of a missing file", code, stderr, "nosuch.pt")
	code, _, stderr = runCLI(t, t.TempDir(), "layers", model, "--input", "3,64")
	oneLineErr(t, "layers with a bad --input", code, stderr, "--input")
}

func TestBenchTinyRunPrintsEveryPassAndNamesABadLayer(t *testing.T) {
	model := testdemo.Path("model.pt")
	code, out, stderr := runCLI(t, t.TempDir(), "bench", model, "--layer", "block3", "--input", "3,64,64",
		"--batches", "2", "--seconds", "0.05", "--rounds", "1")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	for _, want := range []string{`(?m)^activation pass\s+2\s+[0-9.]+`, `(?m)^class gradient\s+2\s+[0-9.]+`,
		`(?m)^PGD step\s+2\s+[0-9.]+`, `(?m)^activation pass\s+auto=\d+`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("bench output does not match %s:\n%s", want, out)
		}
	}
	code, _, stderr = runCLI(t, t.TempDir(), "bench", model, "--layer", "nosuch", "--input", "3,64,64")
	oneLineErr(t, "bench of a missing layer", code, stderr, `"nosuch"`, "block3")
	code, _, stderr = runCLI(t, t.TempDir(), "bench", model, "--layer", "block3", "--passes", "act,fly")
	oneLineErr(t, "bench with an unknown pass", code, stderr, `"fly"`)
}

func TestValidateSaysOKOnTheDemoAndNamesTheBadKeyOrFile(t *testing.T) {
	dir := t.TempDir()
	cfg := stagedDemo(t, dir, filepath.Join(dir, "cache"))
	code, _, stderr := runCLI(t, dir, "validate", cfg)
	if code != 0 {
		t.Fatalf("validate of the demo: exit %d: %s", code, stderr)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "cache", "*")); len(m) > 0 {
		t.Errorf("validate wrote to the cache: %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "runs*")); len(m) > 0 {
		t.Errorf("validate wrote a run directory: %v", m)
	}
	code, _, stderr = runCLI(t, dir, "validate", cfg, "--set", "tcav.nosuchkey=1")
	oneLineErr(t, "validate with an unknown key", code, stderr, "nosuchkey")
	code, _, stderr = runCLI(t, dir, "validate", cfg, "--set", "tcav.layers=[block2,nosuchlayer]")
	oneLineErr(t, "validate with a missing layer", code, stderr, "nosuchlayer")
	code, _, stderr = runCLI(t, dir, "validate", cfg, "--set", "model.path="+filepath.Join(dir, "gone.pt"))
	oneLineErr(t, "validate with a missing model", code, stderr, "gone.pt")
	labels := filepath.Join(dir, "three-labels.txt")
	if err := os.WriteFile(labels, []byte("zebra\ndalmatian\nhoneycomb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, dir, "validate", cfg, "--set", "model.labels="+labels)
	oneLineErr(t, "validate with 3 labels for 4 outputs", code, stderr, "three-labels.txt", "3 names", "4 outputs")
	code, _, stderr = runCLI(t, dir, "validate", filepath.Join(dir, "nosuch.yaml"))
	oneLineErr(t, "validate of a missing config", code, stderr, "nosuch.yaml")
}

func TestUnknownCommandAndFlagExitNonZeroWithOneLine(t *testing.T) {
	code, _, stderr := runCLI(t, t.TempDir(), "frobnicate")
	oneLineErr(t, "unknown command", code, stderr, `"frobnicate"`)
	code, _, stderr = runCLI(t, t.TempDir(), "run", testdemo.Path("nosuch.yaml"), "--log-format", "xml")
	oneLineErr(t, "unknown --log-format", code, stderr)
	code, out, _ := runCLI(t, t.TempDir(), "help")
	if code != 0 {
		t.Errorf("help: exit %d", code)
	}
	for name := range commands {
		if !strings.Contains(out, "cavforge "+name) {
			t.Errorf("help does not list %s", name)
		}
	}
}

// With stderr a pipe (as here) the logs are JSON whether or not
// --log-format json is given: one object a line, each with level, msg and
// time, and the run's own log.jsonl holds the same kind of lines.
func TestLogsArePipedAsOneJSONObjectPerLine(t *testing.T) {
	for _, flags := range [][]string{{"--log-format", "json"}, nil} {
		dir := t.TempDir()
		cfg := stagedDemo(t, dir, filepath.Join(dir, "cache"))
		out := filepath.Join(dir, "out")
		args := append([]string{"run", cfg, "--out", out, "--stages", "tcav", "--set", "tcav.layers=[block3]",
			"--set", "tcav.random.count=3"}, flags...)
		code, _, stderr := runCLI(t, dir, args...)
		if code != 0 {
			t.Fatalf("run %v: exit %d: %s", flags, code, lastLine(stderr))
		}
		check := func(where, text string) {
			lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
			if len(lines) < 3 {
				t.Errorf("%s: %d log lines", where, len(lines))
			}
			infos := 0
			for i, l := range lines {
				var rec map[string]any
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Errorf("%s line %d is not JSON: %v: %q", where, i+1, err, l)
					continue
				}
				for _, k := range []string{"level", "msg", "time"} {
					if s, ok := rec[k].(string); !ok || s == "" {
						t.Errorf("%s line %d has no %s: %q", where, i+1, k, l)
					}
				}
				if rec["level"] == "info" {
					infos++
				}
			}
			if infos == 0 {
				t.Errorf("%s: no info lines", where)
			}
		}
		check("stderr "+strings.Join(flags, " "), stderr)
		if b, err := os.ReadFile(filepath.Join(out, "log.jsonl")); err != nil {
			t.Error(err)
		} else {
			check("log.jsonl", string(b))
		}
	}
}
