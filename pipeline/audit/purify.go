// Package audit is the defender's stage: it asks whether a concept set looks
// tampered with, using only what an analyst has (the model, the set, the
// random sets and the class images; never the clean originals), and gives a
// TCAV result that survives the tampering.
//
// The main signal is purification sensitivity: benign re-encodings (JPEG,
// a slight blur, a resize round trip, fewer bits per sample) barely move a
// natural image, while a perturbation tuned to push a set along a fragile
// direction of one layer does not survive them. Every signal is read against
// the same signal of the run's random sets audited as if they were concepts,
// so the threshold and its false-alarm rate are measured, not assumed.
package audit

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/cavforge/cavforge/pipeline/images"
)

// Purification is one benign re-encoding of an image file.
type Purification struct {
	Name string
	// JPEG is the quality of a JPEG round trip; 0 means Apply instead.
	JPEG  int
	Apply func(images.Image) images.Image
}

// Purifications are the re-encodings the audit uses, weakest first.
func Purifications() []Purification {
	return []Purification{
		{Name: "jpeg90", JPEG: 90},
		{Name: "jpeg75", JPEG: 75},
		{Name: "blur", Apply: Blur},
		{Name: "resize", Apply: func(im images.Image) images.Image { return ResizeRoundTrip(im, ResizeFactor) }},
		{Name: "bits5", Apply: func(im images.Image) images.Image { return BitDepth(im, 5) }},
	}
}

// ResizeFactor is the scale of the resize round trip.
const ResizeFactor = 0.75

// BlurKernel is the blur's 3-tap kernel: a Gaussian of σ = 0.5 pixel.
var BlurKernel = [3]float32{0.10650698, 0.78698604, 0.10650698}

// Names are the purifications' names, in order.
func Names() []string {
	var out []string
	for _, p := range Purifications() {
		out = append(out, p.Name)
	}
	return out
}

// ByName is the purification called name.
func ByName(name string) (Purification, bool) {
	for _, p := range Purifications() {
		if p.Name == name {
			return p, true
		}
	}
	return Purification{}, false
}

// Image purifies one image in memory and gives the values the audit sees:
// im as an 8-bit file would hold it, re-encoded, and on the 8-bit grid again
// (what Write then Decode produce).
func (p Purification) Image(im images.Image) (images.Image, error) {
	px := append([]float32(nil), im.Floats()...)
	images.Quantize(px)
	in := images.Image{Path: im.Path, C: im.C, H: im.H, W: im.W, Pix: px}
	if p.JPEG > 0 {
		return jpegRoundTrip(in, p.JPEG)
	}
	out := p.Apply(in)
	out.Pix = append([]float32(nil), out.Floats()...)
	images.Quantize(out.Pix)
	return out, nil
}

// jpegRoundTrip encodes im (3 channels, on the 8-bit grid) as a JPEG of the
// given quality and decodes it as images.Decode decodes a JPEG file.
func jpegRoundTrip(im images.Image, quality int) (images.Image, error) {
	if im.C != 3 {
		return images.Image{}, fmt.Errorf("jpeg %s: %d channels, want 3", im.Path, im.C)
	}
	n := im.H * im.W
	m := image.NewRGBA(image.Rect(0, 0, im.W, im.H))
	for i := range n {
		for c := range 3 {
			m.Pix[4*i+c] = uint8(math.Max(0, math.Min(255, math.Round(float64(im.Pix[c*n+i])*255))))
		}
		m.Pix[4*i+3] = 255
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: quality}); err != nil {
		return images.Image{}, fmt.Errorf("jpeg %s: %w", im.Path, err)
	}
	dec, err := jpeg.Decode(&buf)
	if err != nil {
		return images.Image{}, fmt.Errorf("jpeg %s: %w", im.Path, err)
	}
	out := images.Image{Path: im.Path, C: 3, H: im.H, W: im.W, Pix: make([]float32, 3*n)}
	for y := range im.H {
		for x := range im.W {
			var r, g, b uint8
			switch d := dec.(type) {
			case *image.YCbCr:
				yi, ci := d.YOffset(x, y), d.COffset(x, y)
				r, g, b = color.YCbCrToRGB(d.Y[yi], d.Cb[ci], d.Cr[ci])
			default:
				c := color.RGBAModel.Convert(dec.At(x, y)).(color.RGBA)
				r, g, b = c.R, c.G, c.B
			}
			i := y*im.W + x
			out.Pix[i], out.Pix[n+i], out.Pix[2*n+i] = float32(r)/255, float32(g)/255, float32(b)/255
		}
	}
	return out, nil
}

// Write purifies every file into dir (same stem; .jpg for JPEG, .png
// otherwise) and returns the new paths in order.
func Write(files []string, dir string, p Purification) ([]string, error) {
	if p.JPEG > 0 {
		return images.ReencodeJPEG(files, dir, p.JPEG)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(files))
	for _, f := range files {
		im, err := images.Decode(f)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))+".png")
		if err := images.WritePNG8(path, p.Apply(im)); err != nil {
			return nil, fmt.Errorf("purify %s (%s): %w", f, p.Name, err)
		}
		out = append(out, path)
	}
	return out, nil
}

// Blur is a separable Gaussian of σ = 0.5 pixel (kernel 0.107, 0.786, 0.107),
// edges clamped: it removes single-pixel noise and leaves textures.
func Blur(im images.Image) images.Image {
	k := BlurKernel
	src := im.Floats()
	tmp := make([]float32, len(src))
	out := make([]float32, len(src))
	h, w := im.H, im.W
	at := func(v, n int) int { return min(max(v, 0), n-1) }
	for c := range im.C {
		base := c * h * w
		for y := range h {
			for x := range w {
				var s float32
				for d := -1; d <= 1; d++ {
					s += k[d+1] * src[base+y*w+at(x+d, w)]
				}
				tmp[base+y*w+x] = s
			}
		}
		for y := range h {
			for x := range w {
				var s float32
				for d := -1; d <= 1; d++ {
					s += k[d+1] * tmp[base+at(y+d, h)*w+x]
				}
				out[base+y*w+x] = s
			}
		}
	}
	return images.Image{Path: im.Path, C: im.C, H: h, W: w, Pix: out}
}

// ResizeRoundTrip scales the image down by f (bilinear) and back up to its
// own size, as a thumbnailing pipeline would.
func ResizeRoundTrip(im images.Image, f float64) images.Image {
	h2, w2 := scaled(im.H, im.W, f)
	small := bilinear(im.Floats(), im.C, im.H, im.W, h2, w2)
	return images.Image{Path: im.Path, C: im.C, H: im.H, W: im.W, Pix: bilinear(small, im.C, h2, w2, im.H, im.W)}
}

// ResizeSize is the intermediate size of the resize round trip of an h×w
// image.
func ResizeSize(h, w int) (int, int) { return scaled(h, w, ResizeFactor) }

func scaled(h, w int, f float64) (int, int) {
	return max(1, int(math.Round(float64(h)*f))), max(1, int(math.Round(float64(w)*f)))
}

// bilinear resamples with pixel centres aligned (align_corners=false).
func bilinear(src []float32, c, h, w, h2, w2 int) []float32 {
	out := make([]float32, c*h2*w2)
	coord := func(i, n, n2 int) (int, int, float32) {
		s := (float64(i)+0.5)*float64(n)/float64(n2) - 0.5
		s = math.Max(0, math.Min(s, float64(n-1)))
		i0 := int(s)
		i1 := min(i0+1, n-1)
		return i0, i1, float32(s - float64(i0))
	}
	for y := range h2 {
		y0, y1, fy := coord(y, h, h2)
		for x := range w2 {
			x0, x1, fx := coord(x, w, w2)
			for ch := range c {
				b := ch * h * w
				top := src[b+y0*w+x0]*(1-fx) + src[b+y0*w+x1]*fx
				bot := src[b+y1*w+x0]*(1-fx) + src[b+y1*w+x1]*fx
				out[ch*h2*w2+y*w2+x] = top*(1-fy) + bot*fy
			}
		}
	}
	return out
}

// BitDepth keeps the top bits of each 8-bit sample (feature squeezing),
// rounding to the nearest of the 2^bits levels.
func BitDepth(im images.Image, bits int) images.Image {
	levels := float64(int(1)<<bits - 1)
	src := im.Floats()
	out := make([]float32, len(src))
	for i, v := range src {
		out[i] = float32(math.Round(float64(v)*levels) / levels)
	}
	return images.Image{Path: im.Path, C: im.C, H: im.H, W: im.W, Pix: out}
}
