// Package activations extracts, for every stage, the layer outputs f_l(x)
// of image sets, and the class gradients ∇_a h_k at those layers, batched on
// the device and cached by content.
package activations

import (
	"fmt"
	"math"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/cache"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/progress"
)

// Set is a named list of image files: a concept, a random set, or the
// images of a class.
type Set struct {
	Name  string
	Files []string
	Hash  string // images.ListHash of Files
}

// Activations holds one value per example and feature: N rows of the
// layer's output (or its gradient) flattened to D = product of Shape.
type Activations struct {
	Set, Layer string
	Hash       string // of the set's image list: what the values are of
	// Model is the extractor's ModelKey (model, preprocessing, precision,
	// device): what the values are through. Empty when unknown.
	Model string
	Shape []int64 // per example
	N     int
	Data  []float32 // N×D, row-major
}

// Dim is the number of features per example.
func (a *Activations) Dim() int { return len(a.Data) / max(a.N, 1) }

// Row is example i's features.
func (a *Activations) Row(i int) []float32 {
	d := a.Dim()
	return a.Data[i*d : (i+1)*d]
}

// Extractor runs image sets through a model. ModelKey identifies everything
// about the model and its preprocessing that changes the values (file hash,
// input spec, precision); it is part of every cache key.
type Extractor struct {
	Model     *model.Model
	ModelKey  string
	Cache     cache.Cache
	BatchSize int
	SkipBad   bool
	Cast      torch.Autocast
	Log       *logrus.Logger
	Force     bool           // recompute values cached before this run (once each)
	Progress  *progress.Bars // may be nil
	Hits      int            // values read from the cache
	// AutoBatch: BatchSize is a default, not the user's; the activation
	// pass picks its own by a timing probe (model.ProbeBatch).
	AutoBatch  bool
	Choice     *model.BatchChoice // how the activation pass runs, once it has run
	GradChoice *model.BatchChoice // how the class-gradient pass runs (probed only with AutoBatch)
	passBatch  int                // batch size of the pass in progress; 0: BatchSize
	fresh      map[string]bool    // keys written by this extractor
	loading    map[string]*loader
}

// Prefetch starts decoding set's first batch in the background when its
// activations at layers are not all cached, so that decoding overlaps the
// device work on the set before it.
func (e *Extractor) Prefetch(set Set, layers []string) {
	if _, busy := e.loading[set.Hash]; busy {
		return
	}
	missing := false
	for _, l := range layers {
		key := e.key("activations", set, l, "")
		missing = missing || (e.Force && !e.fresh[key]) || !e.Cache.Has(key)
	}
	if !missing {
		return
	}
	if e.loading == nil {
		e.loading = map[string]*loader{}
	}
	e.loading[set.Hash] = e.startLoad(set)
}

// Close stops any prefetch still running and frees what it decoded.
func (e *Extractor) Close() {
	for h, l := range e.loading {
		l.stop()
		delete(e.loading, h)
	}
}

// load returns set's batch loader, the prefetched one when there is one.
func (e *Extractor) load(set Set) *loader {
	if l, ok := e.loading[set.Hash]; ok {
		delete(e.loading, set.Hash)
		return l
	}
	return e.startLoad(set)
}

// Extract returns the activations of set at each layer, computing the ones
// not cached in one pass over the images.
func (e *Extractor) Extract(set Set, layers []string) (map[string]*Activations, error) {
	out := map[string]*Activations{}
	var missing []string
	for _, l := range layers {
		a, ok, err := e.cached(e.key("activations", set, l, ""), set, l)
		if err != nil {
			return nil, err
		}
		if ok {
			out[l] = a
		} else {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	bs, err := e.activationBatch(set, missing)
	if err != nil {
		return nil, err
	}
	e.passBatch = bs
	defer func() { e.passBatch = 0 }()
	fresh, err := e.run(set, missing, func(s *torch.Scope, x *torch.Tensor) []*torch.Tensor {
		return e.Model.Capture(s, x, missing, torch.Inference, e.Cast)
	})
	if err != nil {
		return nil, err
	}
	for i, l := range missing {
		if err := e.store(e.key("activations", set, l, ""), fresh[i]); err != nil {
			return nil, err
		}
		out[l] = fresh[i]
	}
	return out, nil
}

// ClassGradients returns ∇_a h_class at layer for every image of set.
func (e *Extractor) ClassGradients(set Set, layer string, class int) (*Activations, error) {
	key := e.key("class-gradients", set, layer, fmt.Sprint(class))
	if a, ok, err := e.cached(key, set, layer); err != nil || ok {
		return a, err
	}
	bs, err := e.gradientBatch(set, layer)
	if err != nil {
		return nil, err
	}
	e.passBatch = bs
	defer func() { e.passBatch = 0 }()
	res, err := e.run(set, []string{layer}, func(s *torch.Scope, x *torch.Tensor) []*torch.Tensor {
		g, _ := e.Model.ClassGradients(s, x, layer, class, e.Cast)
		return []*torch.Tensor{g}
	})
	if err != nil {
		return nil, fmt.Errorf("gradient of logit %d: %w", class, err)
	}
	return res[0], e.store(key, res[0])
}

func (e *Extractor) key(kind string, set Set, layer, extra string) string {
	return cache.Key(kind+"/v2", e.ModelKey, layer, set.Hash, extra, fmt.Sprint(e.SkipBad))
}

func (e *Extractor) cached(key string, set Set, layer string) (*Activations, bool, error) {
	if e.Force && !e.fresh[key] {
		return nil, false, nil
	}
	shape, data, ok, err := e.Cache.Get(key)
	if err != nil || !ok {
		return nil, false, err
	}
	if len(shape) < 1 {
		return nil, false, nil
	}
	e.Hits++
	return &Activations{Set: set.Name, Hash: set.Hash, Model: e.ModelKey, Layer: layer, Shape: shape[1:], N: int(shape[0]), Data: data}, true, nil
}

func (e *Extractor) store(key string, a *Activations) error {
	if e.fresh == nil {
		e.fresh = map[string]bool{}
	}
	e.fresh[key] = true
	return e.Cache.Put(key, append([]int64{int64(a.N)}, a.Shape...), a.Data)
}

// run feeds the set batch by batch through pass, and gathers the tensors
// pass returns (one per layer) on the host. Images are decoded and brought
// to the input size one batch ahead of the device work; each batch's tensors
// are freed before the next.
func (e *Extractor) run(set Set, layers []string, pass func(*torch.Scope, *torch.Tensor) []*torch.Tensor) ([]*Activations, error) {
	l := e.load(set)
	defer l.stop()
	res := make([]*Activations, len(layers))
	for i, l := range layers {
		res[i] = &Activations{Set: set.Name, Hash: set.Hash, Model: e.ModelKey, Layer: l}
	}
	bar := e.Progress.New("images of "+set.Name, len(set.Files))
	defer bar.Done()
	for b := range l.batches {
		err := b.err
		if err == nil {
			err = e.batch(set, b, layers, res, pass)
		}
		if err != nil {
			return nil, err
		}
		bar.Add(b.tried)
	}
	if res[0].N == 0 {
		return nil, fmt.Errorf("set %s: none of its %d images could be decoded", set.Name, len(set.Files))
	}
	return res, nil
}

func (e *Extractor) batch(set Set, b *pixelBatch, layers []string, res []*Activations,
	pass func(*torch.Scope, *torch.Tensor) []*torch.Tensor) error {
	s := torch.NewScope()
	defer s.Close()
	if len(b.pixels) == 0 {
		return nil
	}
	parts := make([]*torch.Tensor, len(b.pixels))
	for i, p := range b.pixels {
		parts[i] = s.Take(p)
	}
	b.pixels = nil
	x := e.Model.Normalize(s, s.Cat(parts, 0))
	outs := e.passBy(s, x, pass)
	if err := s.Err(); err != nil {
		return fmt.Errorf("set %s (%s...): %w", set.Name, b.files[0], err)
	}
	for i, t := range outs {
		v, err := t.Float32s()
		if err != nil {
			return err
		}
		if bad := firstNonFinite(v); bad >= 0 {
			d := len(v) / len(b.files)
			return fmt.Errorf("set %s, layer %s: NaN or Inf in the values for image %s",
				set.Name, layers[i], b.files[bad/d])
		}
		shape := t.Shape()
		if res[i].Shape == nil {
			res[i].Shape = shape[1:]
		}
		res[i].N += int(shape[0])
		res[i].Data = append(res[i].Data, v...)
	}
	return nil
}

func firstNonFinite(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}
