package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/run"
)

// smallDemo writes a small TCAV config over the bundled demo.
func smallDemo(t *testing.T, dir string) string {
	t.Helper()
	yaml := testdemo.Config{Name: "rerun", Seed: 5, MaxImages: 12, BatchSize: 16}.YAML() + `tcav:
  targets: [zebra]
  concepts: [striped, dotted]
  random: {prefix: random500_, count: 3}
  layers: [block3]
  significance: {test: two-sample}   # the calibrated default warns that 3 sets cannot reach alpha
`
	return testdemo.WriteFile(t, dir, "c.yaml", yaml)
}

func bufferLog() (*logrus.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	l := logrus.New()
	l.SetOutput(&b)
	l.SetFormatter(&logrus.TextFormatter{DisableColors: true, DisableTimestamp: true})
	return l, &b
}

// A rerun on the CPU, from the run directory alone, with the cache gone,
// writes the same results.json byte for byte and warns about nothing; once
// the manifest no longer matches the model, the images, the commit or
// libtorch, it says so for each.
func TestRerunIsByteIdenticalAndWarnsAboutDifferences(t *testing.T) {
	root := t.TempDir()
	cfg, err := config.Load(smallDemo(t, root), nil)
	if err != nil {
		t.Fatal(err)
	}
	quiet, _ := bufferLog()
	orig, err := run.Run(cfg, run.Options{Out: filepath.Join(root, "orig"), Log: quiet, Version: Version, Commit: Commit()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "cache")); err != nil {
		t.Fatal(err)
	}

	log, out := bufferLog()
	res, err := rerun(orig, rerunOptions{Out: filepath.Join(root, "again"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(orig, "results.json"))
	b, _ := os.ReadFile(filepath.Join(res.Dir, "results.json"))
	if !res.Identical || !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatalf("rerun results.json differs (identical=%v)", res.Identical)
	}
	if len(res.Warnings) != 0 || strings.Contains(out.String(), "level=warn") {
		t.Fatalf("warnings on a faithful rerun: %v\n%s", res.Warnings, out.String())
	}

	// The same run, as if made elsewhere: every difference is named.
	mpath := filepath.Join(orig, "manifest.json")
	var m map[string]any
	mb, _ := os.ReadFile(mpath)
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	m["commit"] = "0123456789abcdef"
	m["libtorch"] = "0.0.1"
	m["model_hash"] = strings.Repeat("0", 64)
	m["image_lists"].(map[string]any)["striped"] = strings.Repeat("1", 64)
	mb, _ = json.Marshal(m)
	os.WriteFile(mpath, mb, 0o644)

	log, out = bufferLog()
	res, err = rerun(orig, rerunOptions{Out: filepath.Join(root, "third"), Device: "cpu", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Identical {
		t.Error("results changed although only the manifest was edited")
	}
	for _, want := range []string{"cavforge commit", "0123456789abcdef", "libtorch", "0.0.1", "model:", "model.pt has changed", "set striped differs"} {
		if !strings.Contains(strings.Join(res.Warnings, "\n"), want) {
			t.Errorf("no warning mentions %q; warnings:\n%s", want, strings.Join(res.Warnings, "\n"))
		}
	}
	if n := strings.Count(out.String(), "level=warn"); n != 4 {
		t.Errorf("%d warnings logged, want 4:\n%s", n, out.String())
	}

	// A run directory that is not one is a one-line error.
	if _, err := rerun(root, rerunOptions{Log: log}); err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "config.yaml") {
		t.Errorf("rerun of a non-run: %v", err)
	}
}
