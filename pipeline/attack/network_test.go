package attack

import (
	"math"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// linear is a Network with no model file: the input size is the images'
// own, preprocessing is the identity, the layer "input" is the pixels and
// the outputs are pixels·W, so every gradient is known by hand.
type linear struct {
	h, w int
	W    []float32 // [3·h·w, k]
	k    int
}

func (linear) Device() string { return "cpu" }

func (l linear) Pixels(s *torch.Scope, imgs []images.Image) *torch.Tensor {
	var pix []float32
	for _, im := range imgs {
		pix = append(pix, im.Floats()...)
	}
	return s.FromFloat32(pix, []int64{int64(len(imgs)), 3, int64(l.h), int64(l.w)}, "cpu")
}

func (linear) Fit(s *torch.Scope, x *torch.Tensor) *torch.Tensor       { return x }
func (linear) Normalize(s *torch.Scope, x *torch.Tensor) *torch.Tensor { return x }

func (l linear) Forward(s *torch.Scope, x *torch.Tensor, paths []string, mode torch.Mode, cast torch.Autocast) (*torch.Tensor, []*torch.Tensor) {
	n := x.Shape()[0]
	w := s.FromFloat32(l.W, []int64{int64(3 * l.h * l.w), int64(l.k)}, "cpu")
	return s.MM(s.Reshape(x, n, -1), w), l.Capture(s, x, paths, mode, cast)
}

func (linear) Capture(s *torch.Scope, x *torch.Tensor, paths []string, mode torch.Mode, cast torch.Autocast) []*torch.Tensor {
	var acts []*torch.Tensor
	for range paths { // every path is "input"
		acts = append(acts, x)
	}
	return acts
}

func flatImage(h, w int, v float32) images.Image {
	pix := make([]float32, 3*h*w)
	for i := range pix {
		pix[i] = v
	}
	return images.Image{C: 3, H: h, W: w, Pix: pix}
}

// One L∞ step of size eps on the collision loss mean((x−t)²) moves every
// pixel eps toward its target: the attack's gradient comes from the
// Network it is given, not from a model file.
func TestPerturbThroughAFakeLinearNetworkStepsEachPixelTowardItsTarget(t *testing.T) {
	const h, w = 2, 2
	net := linear{h: h, w: w}
	target := make([]float32, 3*h*w)
	for i := range target {
		target[i] = float32(i % 2) // 0, 1, 0, 1, …
	}
	obj, err := NewCollision("cpu", target)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	eps := 4.0 / 255
	x0 := []images.Image{flatImage(h, w, 128.0/255)}
	res, err := Perturb(net, x0, "input", obj, Budget{Norm: "linf", Eps: eps, Step: eps, Steps: 1}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Images[0].Pix {
		want := float32(124.0 / 255)
		if target[i] == 1 {
			want = 132.0 / 255
		}
		if math.Abs(float64(v-want)) > 1e-6 {
			t.Fatalf("pixel %d = %v·255, want %v·255", i, v*255, want*255)
		}
	}
}

// Logits are pixels·W through the Network, one row per image.
func TestLogitsThroughAFakeLinearNetworkArePixelsTimesW(t *testing.T) {
	const h, w = 1, 1
	net := linear{h: h, w: w, k: 2, W: []float32{1, 0, 2, 0, 3, 1}} // [3, 2]
	img := images.Image{C: 3, H: 1, W: 1, Pix: []float32{0.5, 0.25, 1}}
	logits, err := Logits(net, []images.Image{img, flatImage(h, w, 0)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float32{{0.5 + 0.5 + 3, 1}, {0, 0}}
	for i := range want {
		for j := range want[i] {
			if math.Abs(float64(logits[i][j]-want[i][j])) > 1e-6 {
				t.Errorf("logits = %v, want %v", logits, want)
			}
		}
	}
}
