package attack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/images"
)

// WritePoisoned writes each perturbed image into dir as an 8-bit PNG named
// after its original (a JPEG original a.jpg becomes a.png), at the
// original's size: the set drops into any pipeline in place of the files.
func WritePoisoned(dir string, imgs []images.Image) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]string{}
	for _, im := range imgs {
		base := strings.TrimSuffix(filepath.Base(im.Path), filepath.Ext(im.Path)) + ".png"
		if other, dup := seen[base]; dup {
			return nil, fmt.Errorf("%s and %s would both be written as %s: rename one", other, im.Path, base)
		}
		seen[base] = im.Path
		path := filepath.Join(dir, base)
		if err := images.WritePNG8(path, images.Image{Path: path, C: 3, H: im.H, W: im.W, Pix: im.Floats()}); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}

// PoisonedFile is one entry of poisoned.json: a poisoned file measured
// against the original it replaces.
type PoisonedFile struct {
	Original       string  `json:"original"`
	OriginalSHA256 string  `json:"original_sha256"`
	File           string  `json:"file"`
	SHA256         string  `json:"sha256"`
	Width          int     `json:"width"`
	Height         int     `json:"height"`
	Linf           float64 `json:"linf"`
	L2             float64 `json:"l2"`
	PSNR           float64 `json:"psnr"`
}

// PoisonedSet is poisoned.json.
type PoisonedSet struct {
	Norm  string         `json:"norm"`
	Eps   float64        `json:"eps"`
	Files []PoisonedFile `json:"files"`
}

// WriteManifest measures each written file against its original, both
// decoded from disk (not from the attack's tensors), writes poisoned.json at
// path and returns the set's size.
func WriteManifest(path string, originals, written []string, eps float64, norm string) (Size, error) {
	set := PoisonedSet{Norm: norm, Eps: eps}
	for i, o := range originals {
		rec, err := measureFile(o, written[i])
		if err != nil {
			return Size{}, err
		}
		set.Files = append(set.Files, rec)
	}
	var s Size
	n := float64(len(set.Files))
	for _, f := range set.Files {
		s.Linf = max(s.Linf, f.Linf)
		s.L2Mean += f.L2 / n
		s.PSNRMean += f.PSNR / n
	}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return Size{}, err
	}
	return s, atomicfile.Write(path, append(b, '\n'))
}

func measureFile(original, poisoned string) (PoisonedFile, error) {
	o, err := images.Decode(original)
	if err != nil {
		return PoisonedFile{}, err
	}
	p, err := images.Decode(poisoned)
	if err != nil {
		return PoisonedFile{}, err
	}
	if o.H != p.H || o.W != p.W {
		return PoisonedFile{}, fmt.Errorf("%s is %dx%d but its original %s is %dx%d", poisoned, p.W, p.H, original, o.W, o.H)
	}
	osum, err := images.FileSHA256(original)
	if err != nil {
		return PoisonedFile{}, err
	}
	psum, err := images.FileSHA256(poisoned)
	if err != nil {
		return PoisonedFile{}, err
	}
	d := Compare(o.Pix, p.Pix)
	return PoisonedFile{Original: original, OriginalSHA256: osum, File: filepath.Base(poisoned), SHA256: psum,
		Width: p.W, Height: p.H, Linf: d.Linf, L2: d.L2Mean, PSNR: d.PSNRMean}, nil
}
