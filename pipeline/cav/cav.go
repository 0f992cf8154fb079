// Package cav fits CAVs for every stage: a linear classifier separates a
// concept's activations from a random set's at one layer; its unit weight
// vector, pointing toward the concept, is the concept activation vector.
package cav

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/activations"
)

// CAV is a fitted concept activation vector.
type CAV struct {
	Concept, Random, Layer string
	Vector                 []float32 // unit L2 norm, toward the concept
	Bias                   float64   // of the unnormalized classifier, at float32 precision
	Correct, Tested        int       // held-out examples classified right, and in all
	Accuracy               float64   // Correct / Tested

	// What it was fitted from and how, for cavs/index.json (filled by a
	// Fitter): the activation shape per example, whose C order Vector
	// follows, the classifier's name, its own seed, and the image-list
	// hashes of its two sets.
	Shape                       []int64
	Classifier                  string
	Seed                        uint64
	ConceptImages, RandomImages string
}

// Settings choose and tune the classifier.
type Settings struct {
	Classifier   string  // sgd-hinge | logistic | mean-diff
	Alpha        float64 // L2 penalty of sgd-hinge and logistic
	Epochs       int     // most passes over the training rows
	TestFraction float64 // held-out share, per class
	LR           float64 // SGD's constant learning rate; 0: the optimal schedule
}

// Classifier fits w·x + b > 0 for concept rows; a new one is a type here,
// a name in ClassifierFor, and that name in config.Classifiers. Training examples arrive as
// one [n,d] tensor on the device with labels ±1 (concept first).
type Classifier interface {
	Fit(s *torch.Scope, x *torch.Tensor, y []float64, seed uint64) (w *torch.Tensor, b float64)
}

// ClassifierFor returns the classifier that settings name.
func ClassifierFor(st Settings) (Classifier, error) {
	switch st.Classifier {
	case "sgd-hinge", "":
		return SGD{Loss: Hinge, Alpha: st.Alpha, Epochs: st.Epochs, LR: st.LR}, nil
	case "logistic":
		return SGD{Loss: Logistic, Alpha: st.Alpha, Epochs: st.Epochs, LR: st.LR}, nil
	case "mean-diff":
		return MeanDiff{}, nil
	}
	return nil, fmt.Errorf("cav.classifier %q: want sgd-hinge, logistic or mean-diff", st.Classifier)
}

// Seed derives a CAV's own seed from the run seed and what the CAV is of, so
// that no CAV depends on the order in which others were fitted.
func Seed(seed int64, concept, random, layer string) uint64 {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00%s\x00%s", seed, concept, random, layer)
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

// Examples are one set's activations at one layer, [N, D] on the device, so
// that the many CAVs fitted from one set do not upload it each time.
type Examples struct {
	Set, Layer, Hash string
	N, D             int
	rows             *torch.Tensor
}

// Upload puts activations on the device; Close frees them.
func Upload(device string, a *activations.Activations) (*Examples, error) {
	s := torch.NewScope()
	t := s.Keep(s.FromFloat32(a.Data, []int64{int64(a.N), int64(a.Dim())}, device))
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("upload %s at %s: %w", a.Set, a.Layer, err)
	}
	return &Examples{Set: a.Set, Layer: a.Layer, Hash: a.Hash, N: a.N, D: a.Dim(), rows: t}, nil
}

// Close frees the device copy.
func (e *Examples) Close() { e.rows.Close() }

// Fit balances the two sets by truncating the larger, splits each class into
// training and held-out rows (stratified, seeded), fits the classifier on
// the device and reports held-out accuracy.
func Fit(concept, random *Examples, m Method, seed uint64) (*CAV, error) {
	name := fmt.Sprintf("cav %s vs %s at %s", concept.Set, random.Set, concept.Layer)
	if concept.D != random.D {
		return nil, fmt.Errorf("%s: %d vs %d features", name, concept.D, random.D)
	}
	n := min(concept.N, random.N)
	nTest := int(math.Round(m.TestFraction * float64(n)))
	if n-nTest < 1 || nTest < 1 {
		return nil, fmt.Errorf("%s: %d examples per side are too few for a held-out split of %.2f", name, n, m.TestFraction)
	}
	rng := rand.New(rand.NewPCG(seed, 0x63617673))
	pPerm, nPerm := rng.Perm(n), rng.Perm(n)
	nTrain := n - nTest
	device := concept.rows.Device()

	s := torch.NewScope()
	defer s.Close()
	rows := func(pos, neg []int) *torch.Tensor {
		return s.Cat([]*torch.Tensor{
			s.IndexSelect(concept.rows, 0, s.Indices(pos, device)),
			s.IndexSelect(random.rows, 0, s.Indices(neg, device)),
		}, 0)
	}
	pTrain, pTest := heldOut(pPerm, nTest)
	nTrainRows, nTestRows := heldOut(nPerm, nTest)
	x := rows(pTrain, nTrainRows)
	y := make([]float64, 2*nTrain)
	for i := range y {
		y[i] = 1
		if i >= nTrain {
			y[i] = -1
		}
	}
	w, b := m.Classifier.Fit(s, x, y, seed)
	unit := s.Div(w, s.Sqrt(s.Sum(s.Mul(w, w))))
	// Held-out accuracy: concept rows come first in the test block.
	xt := rows(pTest, nTestRows)
	margins := s.Reshape(s.MM(xt, s.Reshape(w, int64(concept.D), 1)), int64(2*nTest))
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	mv, err := margins.Float32s()
	if err != nil {
		return nil, err
	}
	correct := 0
	for i, v := range mv {
		if (float64(v)+b > 0) == (i < nTest) {
			correct++
		}
	}
	vec, err := unit.Float32s()
	if err != nil {
		return nil, err
	}
	if nonFinite(vec) {
		return nil, fmt.Errorf("%s: the classifier found no direction (zero or non-finite weights)", name)
	}
	return &CAV{Concept: concept.Set, Random: random.Set, Layer: concept.Layer, Vector: vec,
		Bias: float64(float32(b)), Correct: correct, Tested: 2 * nTest,
		Accuracy: float64(correct) / float64(2*nTest)}, nil
}

// heldOut splits a shuffled index list into training rows and the nTest
// held-out rows the accuracy is measured on; the two never share a row.
func heldOut(perm []int, nTest int) (train, test []int) {
	return perm[nTest:], perm[:nTest]
}

func nonFinite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return true
		}
	}
	return false
}
