package model

import (
	"fmt"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// Pixels turns decoded images into one [N,3,H,W] batch on the model's device,
// resized and cropped to the input size, values still in [0,1]. Attacks
// perturb this tensor; Normalize then maps it to what the model expects.
func (m *Model) Pixels(s *torch.Scope, imgs []images.Image) *torch.Tensor {
	return m.batch(s, imgs, m.fit)
}

// InputPixels is Pixels for images already at the input size, taken as they
// are: resizing and cropping them again would zoom them. Any other size is
// an error.
func (m *Model) InputPixels(s *torch.Scope, imgs []images.Image) *torch.Tensor {
	for _, im := range imgs {
		if im.H != m.Input.Size[0] || im.W != m.Input.Size[1] {
			s.Fail(fmt.Errorf("%s is %dx%d, not the model input size %dx%d", im.Path, im.H, im.W, m.Input.Size[0], m.Input.Size[1]))
			return nil
		}
	}
	return m.batch(s, imgs, func(_ *torch.Scope, x *torch.Tensor, _, _ int64) *torch.Tensor { return x })
}

func (m *Model) batch(s *torch.Scope, imgs []images.Image, fit func(*torch.Scope, *torch.Tensor, int64, int64) *torch.Tensor) *torch.Tensor {
	if len(imgs) == 0 {
		s.Fail(fmt.Errorf("preprocess: empty batch"))
		return nil
	}
	h, w := int64(m.Input.Size[0]), int64(m.Input.Size[1])
	same := true
	for _, im := range imgs {
		if im.C != 3 {
			s.Fail(fmt.Errorf("preprocess %s: %d channels, want 3", im.Path, im.C))
			return nil
		}
		if im.H != imgs[0].H || im.W != imgs[0].W {
			same = false
		}
	}
	if same {
		// One upload and one resize for the whole batch.
		data := make([]float32, 0, len(imgs)*3*imgs[0].H*imgs[0].W)
		for _, im := range imgs {
			data = append(data, im.Pix...)
		}
		x := s.FromFloat32(data, []int64{int64(len(imgs)), 3, int64(imgs[0].H), int64(imgs[0].W)}, m.Device())
		return fit(s, x, h, w)
	}
	parts := make([]*torch.Tensor, len(imgs))
	for i, im := range imgs {
		x := s.FromFloat32(im.Pix, []int64{1, 3, int64(im.H), int64(im.W)}, m.Device())
		parts[i] = fit(s, x, h, w)
	}
	return s.Cat(parts, 0)
}

// fit resizes [N,3,H,W] so the shorter side is Input.Resize and crops the
// center h×w, or resizes straight to h×w.
func (m *Model) fit(s *torch.Scope, x *torch.Tensor, h, w int64) *torch.Tensor {
	shape := x.Shape()
	if shape == nil {
		return nil
	}
	ih, iw := shape[2], shape[3]
	if m.Input.Resize <= 0 || m.Input.Crop == "none" {
		if ih == h && iw == w {
			return x
		}
		return s.Resize(x, h, w, true)
	}
	r := int64(m.Input.Resize)
	var rh, rw int64
	if ih <= iw {
		rh, rw = r, max(r, (iw*r+ih/2)/ih)
	} else {
		rh, rw = max(r, (ih*r+iw/2)/iw), r
	}
	if rh < h || rw < w {
		s.Fail(fmt.Errorf("preprocess: resize %d is smaller than the input size %dx%d", r, h, w))
		return nil
	}
	if rh != ih || rw != iw {
		x = s.Resize(x, rh, rw, true)
	}
	top, left := (rh-h)/2, (rw-w)/2
	if top != 0 || rh != h {
		x = s.Narrow(x, 2, top, h)
	}
	if left != 0 || rw != w {
		x = s.Narrow(x, 3, left, w)
	}
	return x
}

// Normalize maps [0,1] pixels to the model's input:
// (lo + x·(hi−lo) − mean)/std, with [lo,hi] the PixelRange.
func (m *Model) Normalize(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	lo, hi := m.Input.PixelRange[0], m.Input.PixelRange[1]
	if lo == 0 && hi == 0 {
		hi = 1
	}
	// Folded into one multiply and one subtract per channel.
	shift := make([]float32, 3)
	scale := make([]float32, 3)
	for c := 0; c < 3; c++ {
		std := m.Input.Std[c]
		if std == 0 {
			std = 1
		}
		scale[c] = float32((hi - lo) / std)
		shift[c] = float32((m.Input.Mean[c] - lo) / std)
	}
	sc := s.FromFloat32(scale, []int64{1, 3, 1, 1}, m.Device())
	sh := s.FromFloat32(shift, []int64{1, 3, 1, 1}, m.Device())
	return s.Sub(s.Mul(x, sc), sh)
}
