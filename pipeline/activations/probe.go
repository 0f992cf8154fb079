package activations

import (
	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/model"
)

// activationBatch is the batch size of the activation pass, measured once
// per extractor (Choice) on the first images of the first set that needs it.
func (e *Extractor) activationBatch(set Set, layers []string) (int, error) {
	if e.Choice == nil {
		c, err := e.probe(set, func(x *torch.Tensor, cands []int, fixed int) (model.BatchChoice, error) {
			return model.ProbeBatch(e.Model, x, layers, e.Cast, cands, fixed)
		})
		if err != nil || c == nil {
			return max(e.BatchSize, 1), err
		}
		e.Choice = c
		e.logChoice("activation pass", c)
	}
	return e.Choice.BatchSize, nil
}

// gradientBatch is the batch size of the class-gradient pass, measured once
// per extractor (GradChoice) like the activation pass's.
func (e *Extractor) gradientBatch(set Set, layer string) (int, error) {
	if !e.AutoBatch {
		return max(e.BatchSize, 1), nil
	}
	if e.GradChoice == nil {
		c, err := e.probe(set, func(x *torch.Tensor, cands []int, fixed int) (model.BatchChoice, error) {
			// A gradient pass costs about three activation passes: the
			// largest candidate is left out, except on a GPU.
			if len(cands) > 1 && e.Model.Device() == "cpu" {
				cands = cands[:len(cands)-1]
			}
			return model.ProbeGradBatch(e.Model, x, layer, e.Cast, cands, fixed)
		})
		if err != nil || c == nil {
			return max(e.BatchSize, 1), err
		}
		e.GradChoice = c
		e.logChoice("class-gradient pass", c)
	}
	return e.GradChoice.BatchSize, nil
}

func (e *Extractor) logChoice(pass string, c *model.BatchChoice) {
	if e.Log != nil {
		e.Log.Infof("%s: %s; %s", pass, c, c.Plan)
	}
}

// probe decodes the first images of set and hands them, preprocessed, to
// measure: at BatchSize when that was configured (only the memory format is
// then chosen), otherwise among model.ProbeCandidates. nil when the images
// cannot be read: the pass itself will say what is wrong with them.
func (e *Extractor) probe(set Set, measure func(*torch.Tensor, []int, int) (model.BatchChoice, error)) (*model.BatchChoice, error) {
	fixed := 0
	if !e.AutoBatch {
		fixed = max(e.BatchSize, 1)
	}
	cands := model.ProbeCandidates(e.Model.Device())
	k := min(len(set.Files), cands[len(cands)-1])
	if fixed > 0 {
		k = min(len(set.Files), fixed, 4)
	}
	// The probe's own decode of a few images, one at a time and brought to
	// the input size at once (a camera photo is large only while it is being
	// resized); quiet, since the pass itself reports bad images.
	s := torch.NewScope()
	defer s.Close()
	var parts []*torch.Tensor
	for _, f := range set.Files[:k] {
		im, err := images.DecodeStored(f)
		if err != nil {
			continue
		}
		if px := e.Model.Pixels(s, []images.Image{im}); s.Err() == nil {
			parts = append(parts, px)
		}
	}
	if len(parts) == 0 || s.Err() != nil {
		return nil, nil
	}
	x := e.Model.Normalize(s, s.Cat(parts, 0))
	if s.Err() != nil {
		return nil, nil
	}
	c, err := measure(x, cands, fixed)
	if err != nil {
		return nil, err
	}
	return &c, nil
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
