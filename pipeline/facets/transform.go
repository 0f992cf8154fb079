package facets

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cavforge/cavforge/cgo/torch"
)

// Transform changes a batch of images [N,3,H,W] at random, on the device, so
// that the optimized image has to work from many positions, scales and
// angles; that is what keeps feature visualizations from turning into
// adversarial noise. Its random choices come from r, one draw for the batch.
type Transform func(s *torch.Scope, x *torch.Tensor, r *rand.Rand) *torch.Tensor

// Standard is the transform list of lucid and lucent: pad 12 with grey,
// jitter 8, scale by one of 1+(i−5)/50 for i in 0..10, rotate by −10..10
// degrees (zero five more times, so often not at all), jitter 4.
func Standard() []Transform {
	scales := make([]float64, 11)
	for i := range scales {
		scales[i] = 1 + float64(i-5)/50
	}
	var angles []float64
	for d := -10; d <= 10; d++ {
		angles = append(angles, float64(d))
	}
	angles = append(angles, 0, 0, 0, 0, 0)
	return []Transform{Pad(12, 0.5), Jitter(8), Scale(scales), Rotate(angles), Jitter(4)}
}

// Apply runs the transforms in order.
func Apply(s *torch.Scope, x *torch.Tensor, ts []Transform, r *rand.Rand) *torch.Tensor {
	for _, t := range ts {
		x = t(s, x, r)
	}
	return x
}

// Pad surrounds the images with n pixels of a constant value.
func Pad(n int, value float64) Transform {
	return func(s *torch.Scope, x *torch.Tensor, _ *rand.Rand) *torch.Tensor {
		p := int64(n)
		return s.PadConstant(x, value, p, p, p, p)
	}
}

// Jitter crops a window d−1 pixels smaller than the image at a random
// offset in [0,d) on each axis: a random shift of up to d pixels.
func Jitter(d int) Transform {
	return func(s *torch.Scope, x *torch.Tensor, r *rand.Rand) *torch.Tensor {
		if d <= 1 {
			return x
		}
		shape, ok := batchShape(s, x)
		if !ok {
			return nil
		}
		dy, dx := int64(r.IntN(d)), int64(r.IntN(d))
		keep := int64(d - 1)
		return s.Narrow(s.Narrow(x, 2, dy, shape[2]-keep), 3, dx, shape[3]-keep)
	}
}

// Scale zooms by a factor chosen from scales (>1 enlarges the content),
// keeping the image size; borders repeat the edge pixels.
func Scale(scales []float64) Transform {
	return func(s *torch.Scope, x *torch.Tensor, r *rand.Rand) *torch.Tensor {
		k := scales[r.IntN(len(scales))]
		if k == 1 {
			return x
		}
		return affine(s, x, [6]float64{1 / k, 0, 0, 0, 1 / k, 0})
	}
}

// Rotate turns the images by an angle in degrees chosen from angles, about
// their centre, keeping the size.
func Rotate(angles []float64) Transform {
	return func(s *torch.Scope, x *torch.Tensor, r *rand.Rand) *torch.Tensor {
		a := angles[r.IntN(len(angles))]
		if a == 0 {
			return x
		}
		shape, ok := batchShape(s, x)
		if !ok {
			return nil
		}
		// A rotation in pixels, written in coordinates normalized per axis.
		aspect := float64(shape[3]) / float64(shape[2])
		c, sn := math.Cos(a*math.Pi/180), math.Sin(a*math.Pi/180)
		return affine(s, x, [6]float64{c, -sn / aspect, 0, sn * aspect, c, 0})
	}
}

// affine resamples every image of x through one 2×3 matrix that maps output
// to input coordinates (normalized to [−1,1]), as affine_grid does.
func affine(s *torch.Scope, x *torch.Tensor, m [6]float64) *torch.Tensor {
	shape, ok := batchShape(s, x)
	if !ok {
		return nil
	}
	theta := make([]float32, 0, 6*shape[0])
	for range shape[0] {
		for _, v := range m {
			theta = append(theta, float32(v))
		}
	}
	return s.AffineSample(x, s.FromFloat32(theta, []int64{shape[0], 2, 3}, x.Device()))
}

// batchShape is x's shape when x is a batch of images [N,C,H,W].
func batchShape(s *torch.Scope, x *torch.Tensor) ([]int64, bool) {
	if s.Err() != nil {
		return nil, false
	}
	shape := x.Shape()
	if len(shape) != 4 {
		s.Fail(fmt.Errorf("want a batch of images [N,C,H,W], got shape %v", shape))
		return nil, false
	}
	return shape, true
}
