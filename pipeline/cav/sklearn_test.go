package cav

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

// overlapping returns n rows per class of two Gaussians in d dimensions
// that overlap (a held-out accuracy near 85%, not 100%, so that a wrong
// boundary shows) with correlated features, concept rows first.
func overlapping(n, d int, seed uint64) ([]float32, []float64) {
	r := rand.New(rand.NewPCG(seed, 11))
	mix := make([]float64, d*d) // features share noise: not an isotropic problem
	for i := range mix {
		mix[i] = 0.3 * r.NormFloat64()
	}
	for i := 0; i < d; i++ {
		mix[i*d+i] += 1
	}
	shift := make([]float64, d)
	for j := range shift {
		shift[j] = 0.5 * r.NormFloat64() / math.Sqrt(float64(d))
	}
	shift[0] += 0.9
	x := make([]float32, 2*n*d)
	y := make([]float64, 2*n)
	z := make([]float64, d)
	for i := 0; i < 2*n; i++ {
		y[i] = 1
		if i >= n {
			y[i] = -1
		}
		for k := range z {
			z[k] = r.NormFloat64()
		}
		for j := 0; j < d; j++ {
			v := 0.3 // an offset: the intercept matters
			for k := 0; k < d; k++ {
				v += mix[j*d+k] * z[k]
			}
			if y[i] > 0 {
				v += shift[j]
			}
			x[i*d+j] = float32(v)
		}
	}
	return x, y
}

func rowsOf(x []float32, d int) [][]float64 {
	out := make([][]float64, len(x)/d)
	for i := range out {
		out[i] = make([]float64, d)
		for j := range out[i] {
			out[i][j] = float64(x[i*d+j])
		}
	}
	return out
}

// fitHere fits c on the rows and returns its unit direction and the
// held-out accuracy of w·x + b > 0.
func fitHere(t *testing.T, c Classifier, x []float32, y []float64, tx []float32, ty []float64, d int, seed uint64) ([]float64, float64) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	w, b := c.Fit(s, s.FromFloat32(x, []int64{int64(len(y)), int64(d)}, "cpu"), y, seed)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	wf, err := w.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	unit, norm := make([]float64, d), 0.0
	for _, v := range wf {
		norm += float64(v) * float64(v)
	}
	for j, v := range wf {
		unit[j] = float64(v) / math.Sqrt(norm)
	}
	correct := 0
	for i, label := range ty {
		m := b
		for j := 0; j < d; j++ {
			m += float64(wf[j]) * float64(tx[i*d+j])
		}
		if (m > 0) == (label > 0) {
			correct++
		}
	}
	return unit, float64(correct) / float64(len(ty))
}

func cosine(a, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += a[i] * b[i]
		aa += a[i] * a[i]
		bb += b[i] * b[i]
	}
	return ab / math.Sqrt(aa*bb)
}

// The CAV classifiers against scikit-learn's, the reference TCAV's own, on
// the same rows: SGDClassifier with the hinge loss over many seeds (the
// random streams differ, so the comparison is of the mean direction and
// accuracy), and LogisticRegression solved to tolerance on the objective
// that SGD with the logistic loss minimizes.
func TestCAVClassifiersAgreeWithScikitLearn(t *testing.T) {
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("no /usr/bin/python3 for the scikit-learn reference")
	}
	const n, nTest, d, alpha, seeds = 60, 40, 24, 0.01, 16
	const lr = 0.005 // tcav.cav.lr: the constant schedule
	all, ally := overlapping(n+nTest, d, 1)
	// Train on the first n of each class, test on the rest.
	var x, tx []float32
	var y, ty []float64
	for i, label := range ally {
		row := all[i*d : (i+1)*d]
		if i%(n+nTest) < n {
			x, y = append(x, row...), append(y, label)
		} else {
			tx, ty = append(tx, row...), append(ty, label)
		}
	}
	seedList := make([]int, seeds)
	for i := range seedList {
		seedList[i] = i
	}
	in, _ := json.Marshal(map[string]any{"train_x": rowsOf(x, d), "train_y": y, "test_x": rowsOf(tx, d),
		"test_y": ty, "alpha": alpha, "seeds": seedList, "lr": lr})
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
	if err := os.WriteFile(src, in, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, filepath.Join("..", "..", "scripts", "check", "cav_sklearn.py"), src, dst).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		t.Skipf("scikit-learn reference skipped: %s (apt-get install python3-sklearn; scripts/setup.sh does so as root)", out)
	}
	if err != nil {
		t.Fatalf("cav_sklearn.py: %v\n%s", err, out)
	}
	type fitted struct {
		W        []float64
		Accuracy float64
	}
	var ref struct {
		SGDHinge []fitted `json:"sgd_hinge"`
		Constant []fitted `json:"sgd_hinge_constant"`
		Logistic fitted
	}
	data, _ := os.ReadFile(dst)
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}

	// sgd-hinge, with the optimal and the constant schedule: the mean unit
	// directions agree, each of ours is as close to scikit-learn's mean as
	// scikit-learn's own fits are, and the mean held-out accuracies agree.
	mean := func(ws [][]float64) []float64 {
		m := make([]float64, d)
		for _, w := range ws {
			for j := range m {
				m[j] += w[j] / float64(len(ws))
			}
		}
		return m
	}
	for _, arm := range []struct {
		name string
		clf  SGD
		ref  []fitted
	}{
		{"sgd-hinge", SGD{Loss: Hinge, Alpha: alpha}, ref.SGDHinge},
		{"sgd-hinge lr 0.005", SGD{Loss: Hinge, Alpha: alpha, LR: lr}, ref.Constant},
	} {
		if len(arm.ref) != seeds {
			t.Fatalf("%s: %d reference fits, want %d", arm.name, len(arm.ref), seeds)
		}
		var ours, theirs [][]float64
		var accOurs, accTheirs float64
		for i, r := range arm.ref {
			w, acc := fitHere(t, arm.clf, x, y, tx, ty, d, uint64(i)+100)
			ours, theirs = append(ours, w), append(theirs, r.W)
			accOurs += acc / seeds
			accTheirs += r.Accuracy / seeds
		}
		mo, mt := mean(ours), mean(theirs)
		worstOurs, worstTheirs := 1.0, 1.0
		for i := range ours {
			worstOurs = math.Min(worstOurs, cosine(ours[i], mt))
			worstTheirs = math.Min(worstTheirs, cosine(theirs[i], mt))
		}
		t.Logf("%s: cos(mean ours, mean sklearn) %.4f; worst cos to sklearn's mean: ours %.3f, sklearn's %.3f; accuracy %.3f vs %.3f",
			arm.name, cosine(mo, mt), worstOurs, worstTheirs, accOurs, accTheirs)
		if c := cosine(mo, mt); c < 0.98 {
			t.Errorf("%s: mean direction has cosine %.4f with scikit-learn's, want ≥ 0.98", arm.name, c)
		}
		if worstOurs < worstTheirs-0.05 {
			t.Errorf("%s: our worst fit has cosine %.3f with scikit-learn's mean direction, scikit-learn's own worst %.3f", arm.name, worstOurs, worstTheirs)
		}
		if math.Abs(accOurs-accTheirs) > 0.03 {
			t.Errorf("%s: mean held-out accuracy %.3f, scikit-learn %.3f", arm.name, accOurs, accTheirs)
		}
	}

	// logistic: our SGD fits against the solved optimum.
	var lw [][]float64
	var accLog float64
	for i := range seeds {
		w, acc := fitHere(t, SGD{Loss: Logistic, Alpha: alpha}, x, y, tx, ty, d, uint64(i)+200)
		lw = append(lw, w)
		accLog += acc / seeds
	}
	c := cosine(mean(lw), ref.Logistic.W)
	t.Logf("logistic: cos(mean ours, LogisticRegression) %.4f; accuracy %.3f vs %.3f", c, accLog, ref.Logistic.Accuracy)
	if c < 0.98 {
		t.Errorf("logistic: mean direction has cosine %.4f with LogisticRegression's, want ≥ 0.98", c)
	}
	if math.Abs(accLog-ref.Logistic.Accuracy) > 0.03 {
		t.Errorf("logistic: mean held-out accuracy %.3f, LogisticRegression %.3f", accLog, ref.Logistic.Accuracy)
	}
}
