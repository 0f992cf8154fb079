// Package testdemo is the bundled demo model (testdata/demo) for the tests
// of several packages: where it is, the config preamble that runs it, and a
// file to load that config from. Only tests import it.
package testdemo

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is the absolute path of testdata/demo, whatever the test's working
// directory.
var Dir = findDir()

func findDir() string {
	// This file's own path, or, in a -trimpath build, the module root above
	// the working directory.
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "demo")
	}
	dir, err := os.Getwd()
	for err == nil {
		if _, e := os.Stat(filepath.Join(dir, "go.mod")); e == nil {
			return filepath.Join(dir, "testdata", "demo")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	panic("testdemo: cannot find the module root (go.mod) to locate testdata/demo")
}

// Path joins elem onto Dir: Path("data", "striped") is the striped set.
func Path(elem ...string) string {
	return filepath.Join(append([]string{Dir}, elem...)...)
}

// Config is the part of a run config that the demo tests share: the demo
// model with its labels and preprocessing, and its data.
type Config struct {
	Name      string
	Seed      int    // 0 writes no seed key (the default seed is 0)
	CacheDir  string // "" is "cache", next to the config file
	DataRoot  string // "" is the demo's data
	MaxImages int
	BatchSize int
}

// YAML is the preamble, up to and with the data key; a test appends the
// stage keys (tcav, attack, ...) it is about.
func (c Config) YAML() string {
	seed := ""
	if c.Seed != 0 {
		seed = fmt.Sprintf("seed: %d\n", c.Seed)
	}
	if c.CacheDir == "" {
		c.CacheDir = "cache"
	}
	if c.DataRoot == "" {
		c.DataRoot = Path("data")
	}
	return fmt.Sprintf(`name: %s
%sdevice: cpu
cache_dir: %s
model:
  path: %s
  labels: %s
  input: {size: [64, 64], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
data: {root: %s, max_images: %d, batch_size: %d}
`, c.Name, seed, c.CacheDir, Path("model.pt"), Path("labels.txt"), c.DataRoot, c.MaxImages, c.BatchSize)
}

// WriteFile writes text to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
