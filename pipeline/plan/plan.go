// Package plan resolves a config, once the model is open, into what each
// stage runs: the image sets it reads (listed, checked and hashed once), the
// typed spec of every stage, and the plan validate prints. The runner only
// orders the stages; every config → spec rule lives here.
package plan

import (
	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/stats"
	"github.com/cavforge/cavforge/pipeline/tcav"
)

// Plan is a config resolved against its model.
type Plan struct {
	Cfg     *config.Config
	Input   model.Input   // the model's own preprocessing
	Classes model.Classes // its outputs and their names
	Log     *logrus.Logger
	// Method is tcav.cav's classifier, Transfer the attack's other one
	// (tcav.cav.transfer_classifier).
	Method, Transfer cav.Method
	Stored           *cav.Store // tcav.cavs_from's CAVs, or nil
	// Sets are the image sets listed so far, Effects what preprocessing
	// does to each.
	Sets    map[string]activations.Set
	Effects map[string]string
}

// New resolves cfg against a model's classes and preprocessing: every
// target must name a class, every classifier a known one.
func New(cfg *config.Config, classes model.Classes, input model.Input, log *logrus.Logger) (*Plan, error) {
	p := &Plan{Cfg: cfg, Input: input, Classes: classes, Log: log,
		Sets: map[string]activations.Set{}, Effects: map[string]string{}}
	for _, t := range cfg.Targets() {
		if _, err := classes.Index(t); err != nil {
			return nil, err
		}
	}
	c := cfg.TCAV.CAV
	st := cav.Settings{Classifier: c.Classifier, Alpha: c.Alpha, Epochs: c.Epochs, TestFraction: c.TestFraction}
	var err error
	if p.Method, err = st.Method(); err != nil {
		return nil, err
	}
	st.Classifier = c.TransferClassifier
	if p.Transfer, err = st.Method(); err != nil {
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
	s := p.Cfg.TCAV.Significance
	return tcav.Significance{Method: stats.Method(s.Test), Alpha: s.Alpha, Bonferroni: s.Bonferroni,
		Tests: max(1, len(p.Cfg.TCAV.Concepts)), Negatives: s.Negatives}
}

// class is the output index of a target checked by New.
func (p *Plan) class(target string) int {
	k, _ := p.Classes.Index(target)
	return k
}

// target is a class with its image set.
func (p *Plan) target(name string) tcav.Target {
	return tcav.Target{Name: name, Class: p.class(name), Images: p.Sets[p.Cfg.ClassSet(name)]}
}

// sets are the named listed sets, in order.
func (p *Plan) sets(names []string) []activations.Set {
	out := make([]activations.Set, len(names))
	for i, n := range names {
		out[i] = p.Sets[n]
	}
	return out
}
