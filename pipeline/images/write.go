package images

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
)

// quantize8 is the one rounding rule from [0,1] floats to 8-bit samples:
// nearest, halves away from zero, clamped. float32*255 is exact in float64.
func quantize8(v float32) uint8 {
	return uint8(math.Max(0, math.Min(255, math.Round(float64(v)*255))))
}

// Quantize rounds pix in place to the values an 8-bit PNG can hold, the same
// values WritePNG8 then Decode produce, so an attack can make its last step
// quantization-aware. NaN stays NaN.
func Quantize(pix []float32) {
	for i, v := range pix {
		if v == v {
			pix[i] = unit8(quantize8(v))
		}
	}
}

// WritePNG8 writes img as an 8-bit RGB PNG (one channel gives gray stored as
// RGB), replacing path atomically: a crash leaves the old file or none.
func WritePNG8(path string, img Image) error {
	if img.C != 3 && img.C != 1 {
		return fmt.Errorf("write %s: %d channels, want 1 or 3", path, img.C)
	}
	n := img.H * img.W
	if img.H <= 0 || img.W <= 0 || len(img.Pix) != img.C*n {
		return fmt.Errorf("write %s: %d values for %dx%dx%d", path, len(img.Pix), img.C, img.H, img.W)
	}
	m := image.NewRGBA(image.Rect(0, 0, img.W, img.H))
	for i := range n {
		p := m.Pix[4*i : 4*i+4]
		for c := range 3 {
			v := img.Pix[min(c, img.C-1)*n+i]
			if v != v {
				return fmt.Errorf("write %s: NaN at channel %d, pixel (%d, %d)", path, c, i%img.W, i/img.W)
			}
			p[c] = quantize8(v)
		}
		p[3] = 255 // opaque, so the encoder writes RGB without alpha
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := atomicfile.Write(path, buf.Bytes()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReencodeJPEG decodes each file and writes it into dir as a JPEG of the
// given quality (same name stem, .jpg), the way a pipeline that stores
// images as JPEG would hand them on. It returns the new paths in order.
func ReencodeJPEG(files []string, dir string, quality int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		im, err := Decode(f)
		if err != nil {
			return nil, err
		}
		m := image.NewRGBA(image.Rect(0, 0, im.W, im.H))
		n := im.H * im.W
		for i := range n {
			p := m.Pix[4*i : 4*i+4]
			for c := range 3 {
				p[c] = quantize8(im.Pix[c*n+i])
			}
			p[3] = 255
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: quality}); err != nil {
			return nil, fmt.Errorf("encode %s as JPEG: %w", f, err)
		}
		path := filepath.Join(dir, strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))+".jpg")
		if err := atomicfile.Write(path, buf.Bytes()); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}
