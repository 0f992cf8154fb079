package facets

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cavforge/cavforge/cgo/torch"
)

// Param is how a batch of images is represented while it is optimized: the
// leaf tensors Adam moves, and the map from them to pixels in [0,1].
type Param interface {
	// Leaves are the tensors the optimizer updates.
	Leaves() []*torch.Tensor
	// Image is the batch [N,3,H,W] in [0,1], differentiable with respect to
	// the leaves; it belongs to s.
	Image(s *torch.Scope) *torch.Tensor
	// Close frees the leaves.
	Close()
}

// ColorCorrelation is the square root of the colour correlation matrix of
// ImageNet images (lucid's color_correlation_svd_sqrt): mixing three
// independent channels through it gives natural colour statistics.
var ColorCorrelation = [3][3]float64{
	{0.26, 0.09, 0.02},
	{0.27, 0.00, -0.05},
	{0.27, -0.09, 0.03},
}

// ColorMatrix is ColorCorrelation divided by its largest column norm
// (≈0.4620), so that no channel of the decorrelated space is amplified.
func ColorMatrix() [3][3]float64 {
	largest := 0.0
	for c := range 3 {
		n := 0.0
		for r := range 3 {
			n += ColorCorrelation[r][c] * ColorCorrelation[r][c]
		}
		largest = math.Max(largest, math.Sqrt(n))
	}
	var m [3][3]float64
	for r := range 3 {
		for c := range 3 {
			m[r][c] = ColorCorrelation[r][c] / largest
		}
	}
	return m
}

// fourierDamping is lucid's and lucent's constant: the orthonormal inverse
// FFT of the scaled spectrum is divided by it, which keeps early images from
// saturating the sigmoid at the reference learning rate.
const fourierDamping = 4

// Fourier parameterizes images by their spectrum (lucid's fft_image):
//
//	x = σ(C · irfft2(s ⊙ z) / 4),  s(f) = 1 / max(|f|, 1/max(h,w))
//
// with z the optimized rfft2 coefficients (real and imaginary parts stacked
// last), C the ColorMatrix and an orthonormal inverse FFT. Scaling by
// 1/frequency makes Adam's equal-sized steps on every coefficient favour
// low frequencies, as natural images do.
type Fourier struct {
	N, H, W  int64
	spectrum *torch.Tensor // [N,3,H,W/2+1,2], the leaf
	scale    *torch.Tensor // [H,W/2+1,1]
	color    *torch.Tensor // [3,3]
}

// NewFourier makes a batch of h×w images on device, one per seed, each
// with a random normal spectrum of standard deviation sd (lucid: 0.01)
// drawn from its seed: equal seeds give equal starting images.
func NewFourier(device string, h, w int, sd float64, seeds ...uint64) (*Fourier, error) {
	n := len(seeds)
	if n == 0 || h <= 0 || w <= 0 {
		return nil, fmt.Errorf("fourier image %dx%dx%d: sizes must be positive", n, h, w)
	}
	fw := w/2 + 1
	z := normals(3*h*fw*2, sd, seeds, 0x66667420)
	s := torch.NewScope()
	defer s.Close()
	p := &Fourier{N: int64(n), H: int64(h), W: int64(w)}
	p.spectrum = s.FromFloat32(z, []int64{int64(n), 3, int64(h), int64(fw), 2}, device)
	p.scale = s.FromFloat32(spectrumScale(h, w), []int64{int64(h), int64(fw), 1}, device)
	p.color = colorTensor(s, device)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("fourier image: %w", err)
	}
	if err := p.spectrum.SetRequiresGrad(true); err != nil {
		return nil, err
	}
	s.Keep(p.spectrum)
	s.Keep(p.scale)
	s.Keep(p.color)
	return p, nil
}

// spectrumScale is 1/max(|f|, 1/max(h,w)) over the rfft2 frequency grid:
// rows are fftfreq(h), columns rfftfreq(w), in cycles per pixel.
func spectrumScale(h, w int) []float32 {
	fw := w/2 + 1
	floor := 1 / float64(max(h, w))
	out := make([]float32, h*fw)
	for y := range h {
		fy := float64(y) / float64(h)
		if y > (h-1)/2 {
			fy = float64(y-h) / float64(h)
		}
		for x := range fw {
			fx := float64(x) / float64(w)
			out[y*fw+x] = float32(1 / math.Max(math.Hypot(fx, fy), floor))
		}
	}
	return out
}

// normals draws per image values of standard deviation sd from the
// image's own seed, so that an image does not depend on its batch.
func normals(per int, sd float64, seeds []uint64, stream uint64) []float32 {
	z := make([]float32, 0, per*len(seeds))
	for _, seed := range seeds {
		r := rand.New(rand.NewPCG(seed, stream))
		for range per {
			z = append(z, float32(r.NormFloat64()*sd))
		}
	}
	return z
}

func colorTensor(s *torch.Scope, device string) *torch.Tensor {
	return matrixTensor(s, ColorMatrix(), device)
}

// Leaves implements Param.
func (p *Fourier) Leaves() []*torch.Tensor { return []*torch.Tensor{p.spectrum} }

// Image implements Param.
func (p *Fourier) Image(s *torch.Scope) *torch.Tensor {
	z := s.Mul(p.spectrum, p.scale)
	spec := s.Complex(s.Select(z, 4, 0), s.Select(z, 4, 1))
	latent := s.MulScalar(s.IRFFT2(spec, p.H, p.W), 1.0/fourierDamping)
	return s.Sigmoid(decorrelate(s, latent, p.color))
}

// SetImage sets the coefficients so that Image returns img ([N,3,H,W]
// values in (0,1), row-major), up to float precision: the parameterization
// run backwards. Values are clamped away from 0 and 1, where the sigmoid has
// no inverse.
func (p *Fourier) SetImage(img []float32) error {
	s := torch.NewScope()
	defer s.Close()
	x := s.Clamp(s.FromFloat32(img, []int64{p.N, 3, p.H, p.W}, p.spectrum.Device()), 1e-6, 1-1e-6)
	logit := s.Log(s.Div(x, s.AddScalar(s.Neg(x), 1)))
	inv, err := invert3(ColorMatrix())
	if err != nil {
		return err
	}
	latent := s.MulScalar(decorrelate(s, logit, matrixTensor(s, inv, p.spectrum.Device())), fourierDamping)
	z := s.Div(s.ViewAsReal(s.RFFT2(latent)), p.scale)
	s.CopyInto(p.spectrum, z)
	return s.Err()
}

// decorrelate mixes the channels of [N,3,H,W] through the 3×3 matrix m:
// out_c = Σ_k m[c][k] · x_k.
func decorrelate(s *torch.Scope, x, m *torch.Tensor) *torch.Tensor {
	shape, ok := batchShape(s, x)
	if !ok {
		return nil
	}
	flat := s.Reshape(x, shape[0], 3, -1)
	return s.Reshape(s.Matmul(m, flat), shape...)
}

func matrixTensor(s *torch.Scope, m [3][3]float64, device string) *torch.Tensor {
	v := make([]float32, 0, 9)
	for r := range 3 {
		for c := range 3 {
			v = append(v, float32(m[r][c]))
		}
	}
	return s.FromFloat32(v, []int64{3, 3}, device)
}

func invert3(m [3][3]float64) ([3][3]float64, error) {
	var inv [3][3]float64
	det := m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) -
		m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) +
		m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	if math.Abs(det) < 1e-12 {
		return inv, fmt.Errorf("colour matrix is singular")
	}
	for r := range 3 {
		for c := range 3 {
			// cofactor of (c, r), transposed
			r1, r2 := (c+1)%3, (c+2)%3
			c1, c2 := (r+1)%3, (r+2)%3
			inv[r][c] = (m[r1][c1]*m[r2][c2] - m[r1][c2]*m[r2][c1]) / det
		}
	}
	return inv, nil
}

// Close implements Param.
func (p *Fourier) Close() {
	p.spectrum.Close()
	p.scale.Close()
	p.color.Close()
}

// Pixels parameterizes images directly by their pixels in the decorrelated
// colour space, before the sigmoid: x = σ(C · z). It is the baseline the
// Fourier parameterization improves on (high frequencies come easily).
type Pixels struct {
	latent *torch.Tensor // [N,3,H,W], the leaf
	color  *torch.Tensor
}

// NewPixels makes a batch of h×w images on device, one per seed, each with
// normal latent values of standard deviation sd drawn from its seed.
func NewPixels(device string, h, w int, sd float64, seeds ...uint64) (*Pixels, error) {
	n := len(seeds)
	if n == 0 || h <= 0 || w <= 0 {
		return nil, fmt.Errorf("pixel image %dx%dx%d: sizes must be positive", n, h, w)
	}
	z := normals(3*h*w, sd, seeds, 0x70697820)
	s := torch.NewScope()
	defer s.Close()
	p := &Pixels{latent: s.FromFloat32(z, []int64{int64(n), 3, int64(h), int64(w)}, device), color: colorTensor(s, device)}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("pixel image: %w", err)
	}
	if err := p.latent.SetRequiresGrad(true); err != nil {
		return nil, err
	}
	s.Keep(p.latent)
	s.Keep(p.color)
	return p, nil
}

// Leaves implements Param.
func (p *Pixels) Leaves() []*torch.Tensor { return []*torch.Tensor{p.latent} }

// Image implements Param.
func (p *Pixels) Image(s *torch.Scope) *torch.Tensor {
	return s.Sigmoid(decorrelate(s, p.latent, p.color))
}

// Close implements Param.
func (p *Pixels) Close() {
	p.latent.Close()
	p.color.Close()
}
