// Package plan resolves a config into what the model and each stage run:
// the model's spec, the image sets the stages read (listed, checked and
// hashed once), every stage's typed spec, and the plan validate prints.
// The config → stage spec rules live here; the runner orders the stages,
// caches and times them and writes the run directory. Two specs read that
// directory: the audit's and a facet's poisoned sets are files the attack
// stage wrote (or, with poisoned_from, an earlier run's).
package plan

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// ModelSpec is what model.Open needs of cfg: the file, labels, device,
// precision, preprocessing and every layer any stage captures.
func ModelSpec(cfg *config.Config) model.Spec {
	in := cfg.Model.Input
	return model.Spec{Path: cfg.Model.Path, Labels: cfg.Model.Labels, Device: cfg.Device, Precision: cfg.Precision,
		Input:  model.Input{Size: in.Size, Resize: in.Resize, Crop: in.Crop, Mean: in.Mean, Std: in.Std, PixelRange: in.PixelRange},
		Layers: cfg.Layers()}
}

// Plan is a config resolved against its model.
type Plan struct {
	Classes model.Classes // the model's outputs and their names
	Method  cav.Method    // tcav.cav's classifier
	// Sets are the image sets listed so far (see Set and ListImages).
	Sets map[string]activations.Set

	cfg      *config.Config
	input    model.Input // the model's own preprocessing
	log      *logrus.Logger
	transfer cav.Method        // the attack's other classifier (tcav.cav.transfer_classifier)
	stored   *cav.Store        // tcav.cavs_from's CAVs, or nil
	effects  map[string]string // set → what preprocessing does to it
}

// New resolves cfg against a model's classes and preprocessing: every
// target must name a class, every classifier a known one. Stored are the
// CAVs of tcav.cavs_from the TCAV stage scores with, or nil.
func New(cfg *config.Config, classes model.Classes, input model.Input, stored *cav.Store, log *logrus.Logger) (*Plan, error) {
	p := &Plan{Classes: classes, Sets: map[string]activations.Set{},
		cfg: cfg, input: input, log: log, stored: stored, effects: map[string]string{}}
	for _, t := range cfg.Targets() {
		if _, err := classes.Index(t); err != nil {
			return nil, err
		}
	}
	c := cfg.TCAV.CAV
	st := cav.Settings{Classifier: c.Classifier, Alpha: c.Alpha, Epochs: c.Epochs, TestFraction: c.TestFraction, LR: c.LR}
	var err error
	if p.Method, err = st.Method(); err != nil {
		return nil, err
	}
	st.Classifier = c.TransferClassifier
	if p.transfer, err = st.Method(); err != nil {
		return nil, err
	}
	return p, nil
}

// Hashes are the listed sets' image-list hashes, for the manifest.
func (p *Plan) Hashes() map[string]string {
	out := make(map[string]string, len(p.Sets))
	for name, s := range p.Sets {
		out[name] = s.Hash
	}
	return out
}

// Significance is the configured test, with Bonferroni over the TCAV
// concepts: the attack and the audit judge as the TCAV stage corrects, so
// that a "before" verdict is the one the TCAV table shows.
func (p *Plan) Significance() tcav.Significance {
	s := p.cfg.TCAV.Significance
	return tcav.Significance{Method: stats.Method(s.Test), Alpha: s.Alpha, Bonferroni: s.Bonferroni,
		Tests: max(1, len(p.cfg.TCAV.Concepts)), Negatives: s.Negatives}
}

// reachable reports whether a verdict over r random sets can be
// significant at threshold th: always, except under the calibrated test,
// whose smallest p is 1/(r+1).
func (p *Plan) reachable(r int) (th float64, ok bool) {
	sig := p.Significance()
	th = sig.Threshold(len(p.cfg.TCAV.Concepts))
	return th, sig.Method != stats.Calibrated || stats.Reachable(r, th)
}

// WarnUnreachable logs, before the TCAV stage computes, when the
// calibrated test cannot reach its threshold with the run's random sets,
// and how many it needs.
func (p *Plan) WarnUnreachable() {
	r := len(p.cfg.TCAV.Random.Sets)
	if th, ok := p.reachable(r); !ok {
		p.log.Warnf("tcav: the calibrated test %s (threshold %.3g): no concept can be called significant; it needs %d random sets (tcav.random, or tcav.random.from a pool folder)",
			stats.Resolution(r), th, stats.RandomSetsNeeded(th))
	}
}

// class is the output index of a target New checked.
func (p *Plan) class(target string) int {
	k, err := p.Classes.Index(target)
	if err != nil {
		panic(fmt.Sprintf("plan: target %q was not checked by New: %v", target, err))
	}
	return k
}

// target is a class with its image set.
func (p *Plan) target(name string) tcav.Target {
	return tcav.Target{Name: name, Class: p.class(name), Images: p.Sets[p.cfg.ClassSet(name)]}
}

// lookup are the named sets, each listed already by ListImages.
func (p *Plan) lookup(names []string) []activations.Set {
	out := make([]activations.Set, len(names))
	for i, n := range names {
		out[i] = p.Sets[n]
	}
	return out
}
