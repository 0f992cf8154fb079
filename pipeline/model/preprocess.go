package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
)

// Geometry is what preprocessing does to an image of one size: resize it to
// ResizeH×ResizeW, then keep the OutH×OutW window at (Top, Left).
type Geometry struct {
	H, W             int // the image's own size
	ResizeH, ResizeW int
	Top, Left        int
	OutH, OutW       int
}

// Resized reports whether the image is scaled at all.
func (g Geometry) Resized() bool { return g.ResizeH != g.H || g.ResizeW != g.W }

// Cropped reports whether part of the resized image is cut away.
func (g Geometry) Cropped() bool { return g.ResizeH != g.OutH || g.ResizeW != g.OutW }

// Upscale is the largest factor either side is enlarged by.
func (g Geometry) Upscale() float64 {
	return max(float64(g.ResizeH)/float64(g.H), float64(g.ResizeW)/float64(g.W))
}

// AspectChange is how much the kept window's aspect ratio differs from the
// image's, as a fraction (0.25 = 25%).
func (g Geometry) AspectChange() float64 {
	// The window covers OutH/ResizeH of the image height and OutW/ResizeW
	// of its width; it is shown at OutH×OutW.
	srcAspect := (float64(g.W) * float64(g.OutW) / float64(g.ResizeW)) / (float64(g.H) * float64(g.OutH) / float64(g.ResizeH))
	outAspect := float64(g.OutW) / float64(g.OutH)
	r := outAspect / srcAspect
	if r < 1 {
		r = 1 / r
	}
	return r - 1
}

// Plan is the geometry for an h×w image: with Resize set, the shorter side
// is scaled to Resize and the center Size cut out (Crop center); without
// it, the image is scaled straight to Size, so an image already at Size is
// left as it is.
func (in Input) Plan(h, w int) (Geometry, error) {
	g := Geometry{H: h, W: w, OutH: in.Size[0], OutW: in.Size[1]}
	if in.Resize <= 0 || in.Crop != "center" {
		g.ResizeH, g.ResizeW = g.OutH, g.OutW
		return g, nil
	}
	r := in.Resize
	if h <= w {
		g.ResizeH, g.ResizeW = r, max(r, (w*r+h/2)/h)
	} else {
		g.ResizeH, g.ResizeW = max(r, (h*r+w/2)/w), r
	}
	if g.ResizeH < g.OutH || g.ResizeW < g.OutW {
		return g, fmt.Errorf("model.input.resize %d is smaller than model.input.size %v", r, in.Size)
	}
	g.Top, g.Left = (g.ResizeH-g.OutH)/2, (g.ResizeW-g.OutW)/2
	return g, nil
}

// Pixels turns decoded images into one [N,3,H,W] batch on the model's
// device at the input size, values still in [0,1]; Normalize then maps it
// to what the model expects. Each image is uploaded at its own size (as
// bytes when it was decoded as bytes) and resized on the device, so the
// host never holds a float copy of a large photo.
func (m *Model) Pixels(s *torch.Scope, imgs []images.Image) *torch.Tensor {
	if len(imgs) == 0 {
		s.Fail(fmt.Errorf("preprocess: empty batch"))
		return nil
	}
	parts := make([]*torch.Tensor, len(imgs))
	for i, im := range imgs {
		parts[i] = m.pixels(s, im)
		if parts[i] == nil {
			return nil
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return s.Cat(parts, 0)
}

// pixels is one image as a [1,3,H,W] input-size tensor, in its own scope so
// that the full-size intermediates are freed before the next image.
func (m *Model) pixels(s *torch.Scope, im images.Image) *torch.Tensor {
	if im.C != 3 {
		s.Fail(fmt.Errorf("preprocess %s: %d channels, want 3", im.Path, im.C))
		return nil
	}
	shape := []int64{1, 3, int64(im.H), int64(im.W)}
	local := torch.NewScope()
	defer local.Close()
	var x *torch.Tensor
	if im.Pix8 != nil {
		// Resized on the 0..255 scale and divided once at the end: an
		// image already at the input size reaches the model as k/255
		// exactly, the values Decode gives.
		x = local.ToFloat(local.FromUint8(im.Pix8, shape, m.Device()))
		x = m.Fit(local, x)
		x = local.Div(x, local.AddScalar(local.ZerosLike(x), 255))
	} else {
		x = m.Fit(local, local.FromFloat32(im.Pix, shape, m.Device()))
	}
	if err := local.Err(); err != nil {
		s.Fail(fmt.Errorf("preprocess %s: %w", im.Path, err))
		return nil
	}
	return s.Take(local.Keep(x))
}

// Fit applies the input geometry to [N,3,H,W] images of one size; it is
// differentiable, so an attack can perturb images at their own resolution.
func (m *Model) Fit(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	shape := x.Shape()
	if shape == nil {
		return nil
	}
	g, err := m.Input.Plan(int(shape[2]), int(shape[3]))
	if err != nil {
		s.Fail(err)
		return nil
	}
	if g.Resized() {
		x = s.Resize(x, int64(g.ResizeH), int64(g.ResizeW), true)
	}
	if g.Top != 0 || g.ResizeH != g.OutH {
		x = s.Narrow(x, 2, int64(g.Top), int64(g.OutH))
	}
	if g.Left != 0 || g.ResizeW != g.OutW {
		x = s.Narrow(x, 3, int64(g.Left), int64(g.OutW))
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

// SizeCount is how many images of a set have one size.
type SizeCount struct {
	H, W, N int
}

// Effect says in one line what preprocessing does to a set whose images
// have these sizes, e.g. "128x128 (30), 96x80 (10) → resized to 64x64,
// aspect changed for 10", and lists the warnings a user should see: images
// upscaled more than 2× or whose aspect ratio changes by more than 25%.
func (in Input) Effect(sizes []SizeCount) (line string, warnings []string, err error) {
	sizes = slices.Clone(sizes)
	slices.SortFunc(sizes, func(a, b SizeCount) int {
		if a.N != b.N {
			return b.N - a.N
		}
		if a.H != b.H {
			return b.H - a.H
		}
		return b.W - a.W
	})
	var found []string
	var resized, cropped, aspect, upscaled, total int
	for _, sc := range sizes {
		total += sc.N
		if len(found) < 4 {
			found = append(found, fmt.Sprintf("%dx%d (%d)", sc.W, sc.H, sc.N))
		}
		g, err := in.Plan(sc.H, sc.W)
		if err != nil {
			return "", nil, err
		}
		if g.Resized() {
			resized += sc.N
		}
		if g.Cropped() {
			cropped += sc.N
		}
		if g.AspectChange() > 0.25 {
			aspect += sc.N
		}
		if g.Upscale() > 2 {
			upscaled += sc.N
		}
	}
	if len(sizes) > 4 {
		found = append(found, fmt.Sprintf("%d more sizes", len(sizes)-4))
	}
	var does []string
	switch {
	case resized == 0 && cropped == 0:
		does = append(does, "used as they are")
	case cropped == 0:
		does = append(does, fmt.Sprintf("%d resized to %dx%d", resized, in.Size[1], in.Size[0]))
	default:
		does = append(does, fmt.Sprintf("%d resized (shorter side %d) and center-cropped to %dx%d", total, in.Resize, in.Size[1], in.Size[0]))
	}
	if aspect > 0 {
		does = append(does, fmt.Sprintf("aspect changed by more than 25%% for %d", aspect))
		warnings = append(warnings, fmt.Sprintf("%d of %d images change aspect ratio by more than 25%% (model.input.resize with crop: center keeps it)", aspect, total))
	}
	if upscaled > 0 {
		does = append(does, fmt.Sprintf("upscaled more than 2x: %d", upscaled))
		warnings = append(warnings, fmt.Sprintf("%d of %d images are upscaled more than 2x", upscaled, total))
	}
	return fmt.Sprintf("%d images, %s → %s", total, strings.Join(found, ", "), strings.Join(does, ", ")), warnings, nil
}
