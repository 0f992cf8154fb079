package attack

import (
	"math"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// Size is how large a perturbation is, over n images.
type Size struct {
	Linf     float64 // largest change of any pixel
	L2Mean   float64 // mean per-image L2 norm
	PSNRMean float64 // mean per-image PSNR in dB, capped at MaxPSNR
}

// MaxPSNR stands for an unchanged image (infinite PSNR).
const MaxPSNR = 100.0

// Measure compares perturbed images with the originals, each at its own
// size.
func Measure(orig, adv []images.Image) Size {
	var s Size
	n := float64(len(orig))
	for i := range orig {
		d := Compare(orig[i].Floats(), adv[i].Floats())
		s.Linf = math.Max(s.Linf, d.Linf)
		s.L2Mean += d.L2Mean / n
		s.PSNRMean += d.PSNRMean / n
	}
	return s
}

// Compare is the Size of one perturbed image against its original.
func Compare(orig, adv []float32) Size {
	sq, mx := 0.0, 0.0
	for j := range orig {
		d := math.Abs(float64(adv[j]) - float64(orig[j]))
		sq += d * d
		mx = math.Max(mx, d)
	}
	psnr := MaxPSNR
	if mse := sq / float64(len(orig)); mse > 0 {
		psnr = math.Min(MaxPSNR, 10*math.Log10(1/mse))
	}
	return Size{Linf: mx, L2Mean: math.Sqrt(sq), PSNRMean: psnr}
}

// Logits are the model's outputs for images at any size, through the
// configured preprocessing, one row per image.
func Logits(m Network, imgs []images.Image, batch int) ([][]float32, error) {
	var out [][]float32
	for _, g := range batches(len(imgs), batch) {
		s := torch.NewScope()
		x := m.Pixels(s, imgs[g[0]:g[len(g)-1]+1])
		logits, _ := m.Forward(s, m.Normalize(s, x), nil, torch.Inference, torch.FP32)
		err := s.Err()
		var v []float32
		if err == nil {
			v, err = logits.Float32s()
		}
		s.Close()
		if err != nil {
			return nil, err
		}
		k := len(v) / len(g)
		for i := range g {
			out = append(out, v[i*k:(i+1)*k])
		}
	}
	return out, nil
}

// Predictions are the top classes of logits.
func Predictions(logits [][]float32) []int {
	out := make([]int, len(logits))
	for i, row := range logits {
		out[i] = argmax(row)
	}
	return out
}

// Grid lays out up to k images, as the model sees them, as rows of
// original | perturbed | difference (magnified 10×, centered on grey).
func Grid(m Network, orig, adv []images.Image, k int) (images.Image, error) {
	k = min(k, len(orig))
	o, h, w, err := inputPixels(m, orig[:k])
	if err != nil {
		return images.Image{}, err
	}
	a, _, _, err := inputPixels(m, adv[:k])
	if err != nil {
		return images.Image{}, err
	}
	return grid(o, a, k, h, w), nil
}

// inputPixels are imgs as the network sees them, and that size.
func inputPixels(m Network, imgs []images.Image) (pix []float32, h, w int, err error) {
	s := torch.NewScope()
	defer s.Close()
	x := m.Pixels(s, imgs)
	if err := s.Err(); err != nil {
		return nil, 0, 0, err
	}
	shape := x.Shape()
	pix, err = x.Float32s()
	return pix, int(shape[2]), int(shape[3]), err
}

func grid(orig, adv []float32, k, h, w int) images.Image {
	gw, gh := 3*w, k*h
	pix := make([]float32, 3*gh*gw)
	per := 3 * h * w
	for i := 0; i < k; i++ {
		for c := 0; c < 3; c++ {
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					src := i*per + c*h*w + y*w + x
					dst := c*gh*gw + (i*h+y)*gw + x
					diff := 0.5 + 10*(adv[src]-orig[src])
					pix[dst] = orig[src]
					pix[dst+w] = adv[src]
					pix[dst+2*w] = float32(math.Max(0, math.Min(1, float64(diff))))
				}
			}
		}
	}
	return images.Image{C: 3, H: gh, W: gw, Pix: pix}
}
