package run

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/internal/testdemo"
	"github.com/cavforge/cavforge/pipeline/cav"
)

// Every CAV a run fits is in cavs/, readable by numpy.load as the index
// describes it (float32, the layer's shape, unit norm); a later run with
// tcav.cavs_from and only the class images scores exactly as the run that
// fitted them, and refuses CAVs of another model or another layer shape
// with one line naming the file.
func TestCAVsFromAnEarlierRunScoreAsItDid(t *testing.T) {
	defer torch.SetNumThreads(torch.NumThreads())
	torch.SetNumThreads(1) // see TestResultsJSONUnchangedOnGoldenConfigs
	first := filepath.Join(t.TempDir(), "first")
	mustRun(t, demoConfig(t, "", "tcav.layers=[block2,block3]"), first)

	var idx cav.Index
	b, err := os.ReadFile(filepath.Join(first, "cavs", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	// Per layer: 2 concepts × 6 random sets, 6 baseline CAVs, and the
	// calibrated design's other pairs among the 6.
	if len(idx.CAVs) < 2*(2*6+6) {
		t.Fatalf("%d CAVs in the index, want at least %d", len(idx.CAVs), 2*(2*6+6))
	}
	out, err := exec.Command("/usr/bin/python3", "-c", `import json, sys, numpy
idx = json.load(open(sys.argv[1] + "/index.json"))
for e in idx["cavs"]:
    a = numpy.load(sys.argv[1] + "/" + e["file"])
    assert a.dtype == numpy.float32, (e["file"], a.dtype)
    assert list(a.shape) == e["shape"], (e["file"], a.shape, e["shape"])
    assert abs(float(numpy.linalg.norm(a.ravel())) - 1) < 1e-5, e["file"]
print(len(idx["cavs"]))`, filepath.Join(first, "cavs")).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy.load of cavs/: %v\n%s", err, out)
	}

	// Only the class images: no concept or random set is read.
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "zebra"), os.DirFS(testdemo.Path("data", "zebra"))); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(t.TempDir(), "second")
	mustRun(t, demoConfig(t, root, "tcav.layers=[block2,block3]", "tcav.cavs_from="+first), second)
	want, _ := os.ReadFile(filepath.Join(first, "results.json"))
	got, _ := os.ReadFile(filepath.Join(second, "results.json"))
	if !bytes.Equal(got, want) {
		t.Errorf("scores from stored CAVs differ from the run that fitted them:\n%s", firstDiff(want, got))
	}

	for _, tt := range []struct {
		name, old, new, inError string
	}{
		{"another model", `"model_hash": "`, `"model_hash": "0`, "index.json: model_hash"},
		{"another shape", `"shape": [`, `"shape": [2, `, ".npy: CAV "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad")
			if err := os.CopyFS(bad, os.DirFS(first)); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(bad, "cavs", "index.json")
			if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(tt.old), []byte(tt.new)), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "run")
			_, err := Run(demoConfig(t, root, "tcav.layers=[block2,block3]", "tcav.cavs_from="+bad), Options{Out: out, Log: quietLog()})
			if err == nil || !strings.Contains(err.Error(), tt.inError) || !strings.HasPrefix(err.Error(), "tcav.cavs_from: ") ||
				strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line starting tcav.cavs_from: and naming %q", err, tt.inError)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Errorf("a refused run left %s", out)
			}
		})
	}
}
