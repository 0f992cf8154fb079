package activations

import (
	"io"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

// activationBatch is the batch size of the activation pass: measured once per
// extractor on the first images of the first set that needs the pass, at
// BatchSize when that was configured (then only the memory format is
// chosen), otherwise among model.ProbeCandidates. The choice is in Choice.
func (e *Extractor) activationBatch(set Set, layers []string) (int, error) {
	if e.Choice != nil {
		return e.Choice.BatchSize, nil
	}
	fixed := 0
	if !e.AutoBatch {
		fixed = max(e.BatchSize, 1)
	}
	cands := model.ProbeCandidates(e.Model.Device())
	k := min(len(set.Files), max(cands[len(cands)-1], fixed, 1))
	if fixed > 0 {
		k = min(len(set.Files), fixed, 4)
	}
	// The probe's own decode of a few images: quiet, since the pass itself
	// reports bad images.
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	imgs, err := images.LoadSet(set.Files[:k], true, quiet)
	if err != nil || len(imgs) == 0 {
		return max(e.BatchSize, 1), nil // the pass itself will say what is wrong
	}
	s := torch.NewScope()
	defer s.Close()
	x := e.Model.Normalize(s, e.Model.Pixels(s, imgs))
	if err := s.Err(); err != nil {
		return max(e.BatchSize, 1), nil
	}
	c, err := model.ProbeBatch(e.Model, x, layers, e.Cast, cands, fixed)
	if err != nil {
		return 0, err
	}
	e.Choice = &c
	if e.Log != nil {
		e.Log.Infof("activation pass: %s; %s", c, c.Plan)
	}
	return c.BatchSize, nil
}

// passBy runs pass on x in slices of the measured batch size (the images
// are decoded in batches of BatchSize, which bounds host memory; the device
// pass may want fewer at a time) and joins what it returns.
func (e *Extractor) passBy(s *torch.Scope, x *torch.Tensor, pass func(*torch.Scope, *torch.Tensor) []*torch.Tensor) []*torch.Tensor {
	shape := x.Shape()
	if e.passBatch <= 0 || len(shape) == 0 || int64(e.passBatch) >= shape[0] {
		return pass(s, x)
	}
	var parts [][]*torch.Tensor
	for start := int64(0); start < shape[0]; start += int64(e.passBatch) {
		outs := pass(s, s.Narrow(x, 0, start, min(int64(e.passBatch), shape[0]-start)))
		if s.Err() != nil {
			return nil
		}
		for i, t := range outs {
			if i == len(parts) {
				parts = append(parts, nil)
			}
			parts[i] = append(parts[i], t)
		}
	}
	joined := make([]*torch.Tensor, len(parts))
	for i, p := range parts {
		joined[i] = s.Cat(p, 0)
	}
	return joined
}
