package images

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// Image is a decoded image: C=3 channels (RGB), H rows, W columns, values in
// [0, 1], stored channel-major (Pix[c*H*W + y*W + x]).
//
// An image read by DecodeStored from an 8-bit source keeps its samples as
// bytes instead (Pix8, same layout, value = Pix8/255) and Pix is nil: a
// camera photo then takes a quarter of the memory until it is resized.
type Image struct {
	Path    string
	C, H, W int
	Pix     []float32
	Pix8    []uint8
}

// Floats returns the samples as floats in [0, 1], converting Pix8 if needed.
func (im Image) Floats() []float32 {
	if im.Pix != nil || im.Pix8 == nil {
		return im.Pix
	}
	out := make([]float32, len(im.Pix8))
	for i, v := range im.Pix8 {
		out[i] = unit8(v)
	}
	return out
}

// Decode reads a PNG or JPEG file into RGB floats in [0, 1]. 8- and 16-bit,
// gray, paletted and CMYK sources are accepted. Transparency is composited on
// white: fully transparent pixels often hold arbitrary colour (commonly black),
// and white is what a viewer shows. Tools built on PIL's convert("RGB") drop
// alpha instead, so images with transparency can differ from theirs.
//
// The format is taken from the file's magic bytes, so a JPEG named .png still
// decodes.
func Decode(path string) (Image, error) {
	m, err := decodeFile(path)
	if err != nil {
		return Image{}, err
	}
	return fromImage(path, m), nil
}

// DecodeStored is Decode that keeps 8-bit sources as bytes (Image.Pix8): the
// values are the same, the memory a quarter. Sources whose samples are not
// exactly k/255 (16-bit, transparency composited on white) come back as
// floats.
func DecodeStored(path string) (Image, error) {
	m, err := decodeFile(path)
	if err != nil {
		return Image{}, err
	}
	if im, ok := bytesOf(path, m); ok {
		return im, nil
	}
	return fromImage(path, m), nil
}

func decodeFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, withoutPath(err))
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var m image.Image
	switch format := sniff(br); format {
	case "png":
		m, err = png.Decode(br)
	case "jpeg":
		m, err = jpeg.Decode(br)
	default:
		// Name the format the extension promised, the way its decoder would.
		kind := "jpeg"
		if strings.EqualFold(filepath.Ext(path), ".png") {
			kind = "png"
		}
		err = fmt.Errorf("%s: invalid format: not a PNG or JPEG file", kind)
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("truncated file: %w", err)
		}
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return m, nil
}

// Header reads only an image's size, from its header.
func Header(path string) (w, h int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", path, withoutPath(err))
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var cfg image.Config
	switch sniff(br) {
	case "png":
		cfg, err = png.DecodeConfig(br)
	case "jpeg":
		cfg, err = jpeg.DecodeConfig(br)
	default:
		err = errors.New("not a PNG or JPEG file")
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("truncated file: %w", err)
		}
		return 0, 0, fmt.Errorf("read %s: %w", path, err)
	}
	return cfg.Width, cfg.Height, nil
}

// bytesOf converts the 8-bit opaque image kinds to planar RGB bytes.
func bytesOf(path string, m image.Image) (Image, bool) {
	bd := m.Bounds()
	w, h := bd.Dx(), bd.Dy()
	n := w * h
	var pix []uint8
	alloc := func() { pix = make([]uint8, 3*n) }
	switch m := m.(type) {
	case *image.Gray:
		alloc()
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				i := y*w + x
				pix[i], pix[n+i], pix[2*n+i] = v, v, v
			}
		}
	case *image.YCbCr:
		alloc()
		for y := range h {
			for x := range w {
				yi, ci := m.YOffset(bd.Min.X+x, bd.Min.Y+y), m.COffset(bd.Min.X+x, bd.Min.Y+y)
				r, g, b := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				i := y*w + x
				pix[i], pix[n+i], pix[2*n+i] = r, g, b
			}
		}
	case *image.RGBA, *image.NRGBA:
		// Same memory layout; opaque pixels are equal in both.
		var raw []uint8
		var stride int
		if r, ok := m.(*image.RGBA); ok {
			raw, stride = r.Pix, r.Stride
		} else {
			nr := m.(*image.NRGBA)
			raw, stride = nr.Pix, nr.Stride
		}
		for y := range h {
			row := raw[y*stride : y*stride+4*w]
			for x := range w {
				if row[4*x+3] != 255 {
					return Image{}, false
				}
			}
		}
		alloc()
		for y := range h {
			row := raw[y*stride : y*stride+4*w]
			for x := range w {
				i := y*w + x
				pix[i], pix[n+i], pix[2*n+i] = row[4*x], row[4*x+1], row[4*x+2]
			}
		}
	default:
		return Image{}, false
	}
	return Image{Path: path, C: 3, H: h, W: w, Pix8: pix}, true
}

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte{0xff, 0xd8}
)

func sniff(br *bufio.Reader) string {
	head, _ := br.Peek(len(pngMagic))
	switch {
	case bytes.HasPrefix(head, pngMagic):
		return "png"
	case bytes.HasPrefix(head, jpegMagic):
		return "jpeg"
	}
	return ""
}

// unit8 and unit16 are the only ways a stored sample becomes a float, so a
// value written by WritePNG8 reads back bit-identical to Quantize's.
func unit8(v uint8) float32   { return float32(v) / 255 }
func unit16(v uint32) float32 { return float32(v) / 65535 }

// over8 composites a non-premultiplied 8-bit sample with alpha a on white.
func over8(c, a uint8) float32 {
	switch a {
	case 255:
		return unit8(c)
	case 0:
		return 1
	}
	return float32(int(c)*int(a)+255*(255-int(a))) / (255 * 255)
}

// over16 composites a non-premultiplied 16-bit sample with alpha a on white.
func over16(c, a uint32) float32 {
	switch a {
	case 0xffff:
		return unit16(c)
	case 0:
		return 1
	}
	num := uint64(c)*uint64(a) + 0xffff*uint64(0xffff-a)
	return float32(float64(num) / (65535.0 * 65535.0))
}

// rgbOf converts any colour, composited on white.
func rgbOf(c color.Color) [3]float32 {
	switch c := c.(type) {
	case color.NRGBA:
		return [3]float32{over8(c.R, c.A), over8(c.G, c.A), over8(c.B, c.A)}
	case color.Gray:
		v := unit8(c.Y)
		return [3]float32{v, v, v}
	}
	// Premultiplied 16-bit: on white, out = c + (1 - a).
	r, g, b, a := c.RGBA()
	if a == 0xffff {
		return [3]float32{unit16(r), unit16(g), unit16(b)}
	}
	return [3]float32{unit16(r + 0xffff - a), unit16(g + 0xffff - a), unit16(b + 0xffff - a)}
}

func fromImage(path string, m image.Image) Image {
	bd := m.Bounds()
	w, h := bd.Dx(), bd.Dy()
	n := w * h
	pix := make([]float32, 3*n)
	R, G, B := pix[:n], pix[n:2*n], pix[2*n:]
	set := func(i int, r, g, b float32) { R[i], G[i], B[i] = r, g, b }

	switch m := m.(type) {
	case *image.Gray:
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				f := unit8(v)
				set(y*w+x, f, f, f)
			}
		}
	case *image.Gray16:
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+2*w]
			for x := range w {
				f := unit16(uint32(row[2*x])<<8 | uint32(row[2*x+1]))
				set(y*w+x, f, f, f)
			}
		}
	case *image.RGBA: // premultiplied
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+4*w]
			for x := range w {
				p := row[4*x : 4*x+4]
				if p[3] == 255 {
					set(y*w+x, unit8(p[0]), unit8(p[1]), unit8(p[2]))
					continue
				}
				k := 255 - int(p[3])
				set(y*w+x, unit8(uint8(int(p[0])+k)), unit8(uint8(int(p[1])+k)), unit8(uint8(int(p[2])+k)))
			}
		}
	case *image.NRGBA:
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+4*w]
			for x := range w {
				p := row[4*x : 4*x+4]
				set(y*w+x, over8(p[0], p[3]), over8(p[1], p[3]), over8(p[2], p[3]))
			}
		}
	case *image.NRGBA64:
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+8*w]
			for x := range w {
				p := row[8*x : 8*x+8]
				a := uint32(p[6])<<8 | uint32(p[7])
				set(y*w+x,
					over16(uint32(p[0])<<8|uint32(p[1]), a),
					over16(uint32(p[2])<<8|uint32(p[3]), a),
					over16(uint32(p[4])<<8|uint32(p[5]), a))
			}
		}
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				yi, ci := m.YOffset(bd.Min.X+x, bd.Min.Y+y), m.COffset(bd.Min.X+x, bd.Min.Y+y)
				r, g, b := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				set(y*w+x, unit8(r), unit8(g), unit8(b))
			}
		}
	case *image.Paletted:
		lut := make([][3]float32, len(m.Palette))
		for i, c := range m.Palette {
			lut[i] = rgbOf(c)
		}
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, idx := range row {
				var c [3]float32 // out-of-palette index: black, as image.Paletted.At does
				if int(idx) < len(lut) {
					c = lut[idx]
				}
				set(y*w+x, c[0], c[1], c[2])
			}
		}
	default: // RGBA64, CMYK, ...
		for y := range h {
			for x := range w {
				c := rgbOf(m.At(bd.Min.X+x, bd.Min.Y+y))
				set(y*w+x, c[0], c[1], c[2])
			}
		}
	}
	return Image{Path: path, C: 3, H: h, W: w, Pix: pix}
}

// LoadSet decodes paths in parallel and returns the images in the same order.
// A file that fails to decode is an error naming it, the first such file in
// path order; with skipBad it is logged as a warning and left out instead.
// A nil log means logrus's standard logger.
func LoadSet(paths []string, skipBad bool, log *logrus.Logger) ([]Image, error) {
	return loadSet(paths, skipBad, log, Decode)
}

// LoadStored is LoadSet with DecodeStored.
func LoadStored(paths []string, skipBad bool, log *logrus.Logger) ([]Image, error) {
	return loadSet(paths, skipBad, log, DecodeStored)
}

func loadSet(paths []string, skipBad bool, log *logrus.Logger, decode func(string) (Image, error)) ([]Image, error) {
	if log == nil {
		log = logrus.StandardLogger()
	}
	imgs := make([]Image, len(paths))
	errs := make([]error, len(paths))

	// firstBad is the lowest failing index so far. Workers still decode every
	// index below it, so the error reported does not depend on scheduling.
	var firstBad atomic.Int64
	firstBad.Store(int64(len(paths)))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(paths)) {
		wg.Go(func() {
			for i := range next {
				if !skipBad && int64(i) > firstBad.Load() {
					continue
				}
				imgs[i], errs[i] = decode(paths[i])
				if errs[i] != nil && !skipBad {
					for {
						cur := firstBad.Load()
						if int64(i) >= cur || firstBad.CompareAndSwap(cur, int64(i)) {
							break
						}
					}
				}
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()

	if !skipBad {
		if i := firstBad.Load(); i < int64(len(paths)) {
			return nil, errs[i]
		}
		return imgs, nil
	}
	out := imgs[:0]
	for i, err := range errs {
		if err != nil {
			log.WithField("file", paths[i]).Warnf("skipping image: %v", err)
			continue
		}
		out = append(out, imgs[i])
	}
	if len(out) == 0 && len(paths) > 0 {
		return nil, fmt.Errorf("none of the %d images could be decoded (first: %w)", len(paths), errs[0])
	}
	return out, nil
}
