package tcav

import (
	"fmt"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
)

// Spec is one TCAV experiment, resolved from the config: every concept
// against every random set at every layer, for every target.
type Spec struct {
	Targets      []Target
	Concepts     []activations.Set
	Randoms      []activations.Set
	Layers       []string
	Method       cav.Method
	Significance Significance
	// Stored, when set, holds the CAVs to score with (tcav.cavs_from):
	// nothing is fitted and no concept or random set is read.
	Stored *cav.Store
}

// Target is a class to explain and the images of it.
type Target struct {
	Name   string
	Class  int
	Images activations.Set
}

// Network is what the stage needs of the model.
type Network interface {
	Extract(set activations.Set, layers []string) (map[string]*activations.Activations, error)
	Prefetch(set activations.Set, layers []string)
	ClassGradients(set activations.Set, layer string, class int) (*activations.Activations, error)
}

// Run is the TCAV stage: activations of every concept and random set, CAVs
// of every concept against every random set plus the random-vs-random
// baseline (fitted by f, or read from spec.Stored), class gradients once per
// (target, layer), then scores and significance. timed records the time of
// its steps.
func Run(spec Spec, net Network, f *cav.Fitter, device string, timed func(step string, do func() error) error) ([]Entry, error) {
	if len(spec.Targets) == 0 {
		return nil, nil
	}
	layers := map[string]*Layer{}
	if spec.Stored == nil {
		var err error
		if layers, err = fitLayers(spec, net, f, timed); err != nil {
			return nil, err
		}
	}
	var out []Entry
	err := timed("score", func() error {
		for _, t := range spec.Targets {
			for _, l := range spec.Layers {
				g, err := net.ClassGradients(t.Images, l, t.Class)
				if err != nil {
					return err
				}
				if layers[l] == nil { // stored CAVs: the layer's shape is the gradients'
					if layers[l], err = StoredLayer(spec.Stored, names(spec.Concepts), names(spec.Randoms), l, spec.Method.Name, g.Shape, spec.Significance); err != nil {
						return fmt.Errorf("tcav.cavs_from: %w", err)
					}
				}
				tl := *layers[l]
				tl.Target, tl.Grads = t.Name, g
				entries, err := Entries(device, tl, spec.Significance)
				if err != nil {
					return err
				}
				out = append(out, entries...)
			}
		}
		return nil
	})
	return out, err
}

// fitLayers extracts the activations of every concept and random set, then
// fits each layer's CAVs.
func fitLayers(spec Spec, net Network, f *cav.Fitter, timed func(string, func() error) error) (map[string]*Layer, error) {
	acts := map[string]map[string]*activations.Activations{} // set → layer → values
	err := timed("extract activations", func() error {
		sets := append(append([]activations.Set(nil), spec.Concepts...), spec.Randoms...)
		for i, s := range sets {
			if i+1 < len(sets) {
				net.Prefetch(sets[i+1], spec.Layers)
			}
			a, err := net.Extract(s, spec.Layers)
			if err != nil {
				return err
			}
			acts[s.Name] = a
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	layers := map[string]*Layer{}
	err = timed("fit CAVs", func() error {
		for _, l := range spec.Layers {
			at := func(sets []activations.Set) []*activations.Activations {
				out := make([]*activations.Activations, len(sets))
				for i, s := range sets {
					out[i] = acts[s.Name][l]
				}
				return out
			}
			tl, err := FitLayer(f, at(spec.Concepts), at(spec.Randoms), spec.Method, spec.Significance)
			if err != nil {
				return err
			}
			layers[l] = tl
		}
		return nil
	})
	return layers, err
}

func names(sets []activations.Set) []string {
	out := make([]string, len(sets))
	for i, s := range sets {
		out[i] = s.Name
	}
	return out
}
