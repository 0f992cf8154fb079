package run

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden/*.results.json from the current code")

// goldenRuns are small fixed configs over the demo model and data that
// between them take every stage and both significance tests through the
// pipeline. A refactor must leave their results.json byte for byte as it
// was: nothing is normalized, since results.json holds no timings, run ids
// or absolute paths (those live in manifest.json and log.jsonl).
var goldenRuns = []struct {
	name      string
	overrides []string
}{
	// The calibrated test over 6 random sets at two layers: concept CAVs,
	// the baseline and the null design's extra pairs.
	{"tcav-calibrated", []string{"tcav.layers=[block2,block3]"}},
	// Random sets drawn from a pool, mean-diff CAVs, the one-sample test
	// (recorded from the code before the refactor, like the others).
	{"random-from-mean-diff", []string{"tcav.random.from=random_pool", "tcav.random.count=12",
		"tcav.cav.classifier=mean-diff", "tcav.significance.test=one-sample"}},
	// Attack (judge, the three transfers), audit and facets (one against
	// the attack's poisoned set) under the two-sample test.
	{"stages", []string{"tcav.random.count=10", "tcav.concepts=[striped,dotted]", "tcav.significance.test=two-sample",
		`attack=[{concept: striped, target: zebra, layer: block2, goal: suppress, eps: [0.0314], step: 0.004, steps: 8}]`,
		"audit={}",
		`facets=[{target: zebra, facet: striped, facet_layers: [block2], strength: [0, 5], batch: 2, size: 32, steps: 5, compare_attack: true}]`}},
}

// A change meant to move code leaves what a run computes alone; this fails
// on any difference in results.json or in the manifest's image lists (run
// with -update-golden to record a change that is meant).
func TestResultsJSONUnchangedOnGoldenConfigs(t *testing.T) {
	// One intra-op thread: with more, how libtorch splits a reduction
	// depends on how busy its pool is (the CAV fits run side by side), and
	// the last float32 bit of a magnitude with it.
	defer torch.SetNumThreads(torch.NumThreads())
	torch.SetNumThreads(1)
	for _, g := range goldenRuns {
		t.Run(g.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			_, m := mustRun(t, demoConfig(t, "", g.overrides...), out)
			got, err := os.ReadFile(filepath.Join(out, "results.json"))
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", "golden", g.name+".results.json"), got)
			// The image lists the manifest records: which files each set
			// read (relative names and contents), as set listing decides.
			lists, err := json.MarshalIndent(m.ImageLists, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", "golden", g.name+".image_lists.json"), append(lists, '\n'))
		})
	}
}

// checkGolden compares got with the golden file, or records it there with
// -update-golden.
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *updateGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (record it with -update-golden)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n%s", golden, firstDiff(want, got))
	}
}

// firstDiff shows the first differing line of two files, with its number.
func firstDiff(want, got []byte) string {
	w, g := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b []byte
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if !bytes.Equal(a, b) {
			return "line " + strconv.Itoa(i+1) + ":\n  want " + string(a) + "\n  got  " + string(b)
		}
	}
	return "(same lines, different bytes)"
}
