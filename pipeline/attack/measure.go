package attack

import (
	"math"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

// Size is how large a perturbation is, over n images.
type Size struct {
	Linf     float64 // largest change of any pixel
	L2Mean   float64 // mean per-image L2 norm
	PSNRMean float64 // mean per-image PSNR in dB, capped at MaxPSNR
}

// MaxPSNR stands for an unchanged image (infinite PSNR).
const MaxPSNR = 100.0

// Measure compares perturbed pixels with the originals, image by image.
func Measure(orig, adv []float32, n int) Size {
	var s Size
	per := len(orig) / n
	for i := 0; i < n; i++ {
		sq, mx := 0.0, 0.0
		for j := i * per; j < (i+1)*per; j++ {
			d := math.Abs(float64(adv[j]) - float64(orig[j]))
			sq += d * d
			mx = math.Max(mx, d)
		}
		s.Linf = math.Max(s.Linf, mx)
		s.L2Mean += math.Sqrt(sq) / float64(n)
		psnr := MaxPSNR
		if mse := sq / float64(per); mse > 0 {
			psnr = math.Min(MaxPSNR, 10*math.Log10(1/mse))
		}
		s.PSNRMean += psnr / float64(n)
	}
	return s
}

// Predictions are the model's top classes for pixels [n,3,H,W] in [0,1].
func Predictions(m *model.Model, pixels []float32, shape []int64, batch int) ([]int, error) {
	var out []int
	per := int(shape[1] * shape[2] * shape[3])
	n := int(shape[0])
	batch = max(batch, 1)
	for start := 0; start < n; start += batch {
		size := min(batch, n-start)
		s := torch.NewScope()
		x := s.FromFloat32(pixels[start*per:(start+size)*per], append([]int64{int64(size)}, shape[1:]...), m.Device())
		logits, _ := m.Forward(s, m.Normalize(s, x), nil, torch.Inference, torch.FP32)
		top := s.ToFloat(s.Argmax(logits, 1))
		v, err := top.Float32s()
		if err == nil {
			err = s.Err()
		}
		s.Close()
		if err != nil {
			return nil, err
		}
		for _, c := range v {
			out = append(out, int(c))
		}
	}
	return out, nil
}

// Grid lays out up to k images as rows of original | perturbed | difference
// (magnified 10×, centered on grey).
func Grid(orig, adv []float32, n, h, w, k int) images.Image {
	k = min(k, n)
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
