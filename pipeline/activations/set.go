package activations

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

// NewSet is the set name of the chosen files under root, each one's header
// read so that a corrupt or unreadable file is found before any compute
// (with skipBad, skipped with a warning), the list hashed, and what
// preprocessing through in does to its sizes logged and returned.
func NewSet(root, name string, files []string, in model.Input, skipBad bool, log *logrus.Logger) (s Set, effect string, err error) {
	counts := map[[2]int]int{}
	kept := files[:0:0]
	for _, f := range files {
		w, h, err := images.Header(f)
		if err != nil {
			if !skipBad {
				return Set{}, "", fmt.Errorf("%w (data.skip_bad_images: true skips it)", err)
			}
			log.WithField("file", f).Warnf("skipping image: %v", err)
			continue
		}
		counts[[2]int{h, w}]++
		kept = append(kept, f)
	}
	if len(kept) == 0 {
		return Set{}, "", fmt.Errorf("data.root/%s: none of its %d images can be read", name, len(files))
	}
	var sizes []model.SizeCount
	for hw, n := range counts {
		sizes = append(sizes, model.SizeCount{H: hw[0], W: hw[1], N: n})
	}
	effect, warnings, err := in.Effect(sizes)
	if err != nil {
		return Set{}, "", err
	}
	log.WithField("set", name).Info(effect)
	for _, w := range warnings {
		log.WithField("set", name).Warn(w)
	}
	hash, err := images.ListHash(root, kept)
	if err != nil {
		return Set{}, "", err
	}
	return Set{Name: name, Files: kept, Hash: hash}, effect, nil
}
