package facets

import (
	"fmt"
	"math"

	"github.com/cavforge/cavforge/cgo/torch"
	"github.com/cavforge/cavforge/pipeline/cav"
)

// MeanDirection is the facet direction at one layer from the facet
// concept's CAVs against several random sets: their mean, renormalized to
// unit length, so that no one random set decides it. shape is the layer's
// per-example output shape (e.g. [C,H,W]).
func MeanDirection(layer string, shape []int64, cavs []*cav.CAV) (Direction, error) {
	if len(cavs) == 0 {
		return Direction{}, fmt.Errorf("facet direction at %s: no CAVs", layer)
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	sum := make([]float64, n)
	for _, c := range cavs {
		if int64(len(c.Vector)) != n {
			return Direction{}, fmt.Errorf("facet direction at %s: CAV %s vs %s has %d values for shape %v",
				layer, c.Concept, c.Random, len(c.Vector), shape)
		}
		for i, v := range c.Vector {
			sum[i] += float64(v)
		}
	}
	norm := 0.0
	for _, v := range sum {
		norm += v * v
	}
	norm = math.Sqrt(norm)
	if norm == 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return Direction{}, fmt.Errorf("facet direction at %s: the CAVs cancel out", layer)
	}
	w := make([]float32, n)
	for i, v := range sum {
		w[i] = float32(v / norm)
	}
	return Direction{Layer: layer, Shape: append([]int64(nil), shape...), Weight: w}, nil
}

// Measure is what a rendered batch shows: per image, the projection wᵀg(x)
// of its activation at each direction's layer onto the direction, and the
// value of the target objective, on the images as they are (no transforms),
// resized to the model's input size.
type Measure struct {
	Projections [][]float64 // per direction, per image
	Target      []float64   // per image
}

// MeasureImages runs the batch r through net once and measures it.
func MeasureImages(net Network, r *Result, target Objective, dirs []Direction, inputSize [2]int) (*Measure, error) {
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(r.Pixels, []int64{int64(r.N), 3, int64(r.H), int64(r.W)}, net.Device())
	if h, w := int64(inputSize[0]), int64(inputSize[1]); h > 0 && w > 0 && (h != int64(r.H) || w != int64(r.W)) {
		x = s.Resize(x, h, w, false)
	}
	layers := append([]string(nil), target.Layers()...)
	for _, d := range dirs {
		layers = appendNew(layers, d.Layer)
	}
	logits, acts := net.Forward(s, net.Normalize(s, x), layers, torch.Grad, torch.FP32)
	pass := &Pass{Image: x, Logits: logits, Acts: map[string]*torch.Tensor{}}
	for i, l := range layers {
		if i < len(acts) {
			pass.Acts[l] = acts[i]
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	m := &Measure{}
	tv, err := floats(s, target.Value(s, pass))
	if err != nil {
		return nil, err
	}
	m.Target = tv
	for _, d := range dirs {
		a := pass.Acts[d.Layer]
		if a.Numel() != int64(r.N)*int64(len(d.Weight)) {
			return nil, fmt.Errorf("measure at %s: activations of shape %v for a direction of shape %v", d.Layer, a.Shape(), d.Shape)
		}
		w := s.FromFloat32(d.Weight, []int64{int64(len(d.Weight)), 1}, net.Device())
		p, err := floats(s, s.MM(s.Reshape(a, int64(r.N), -1), w))
		if err != nil {
			return nil, err
		}
		m.Projections = append(m.Projections, p)
	}
	return m, nil
}

func floats(s *torch.Scope, t *torch.Tensor) ([]float64, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	v, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out, nil
}
