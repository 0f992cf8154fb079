package config

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		overrides []string
		key       string // the key the error must name
		want      string // and a part of its message
	}{
		{"valid", nil, "", ""},
		{"valid l2 promote collision", []string{"attack.0.norm=l2", "attack.0.goal=promote",
			"attack.0.objective=feature-collision", "attack.0.toward=dotted"}, "", ""},
		{"valid list random", []string{"tcav.random=[a,b,c]"}, "", ""},
		{"valid l2 above one", []string{"attack.0.norm=l2", "attack.0.eps=[1.74, 3.48]"}, "", ""},
		{"valid adaptive", []string{"attack.0.adaptive={purifications: [jpeg75, blur], shift_weight: 2, alignment_weight: 1000}"}, "", ""},
		{"valid cuda index", []string{"device=cuda:3"}, "", ""},
		{"valid center crop", []string{"model.input.crop=center", "model.input.resize=256"}, "", ""},

		{"name with slash", []string{"name=a/b"}, "name", "cannot name a run directory"},
		{"device", []string{"device=gpu"}, "device", `"gpu" is not one of auto, cpu, cuda, cuda:N`},
		{"device index", []string{"device=cuda:x"}, "device", "is not one of"},
		{"precision", []string{"precision=fp64"}, "precision", `"fp64" is not one of fp32, bf16, fp16`},
		{"cache_dir", []string{"cache_dir="}, "cache_dir", "required"},
		{"model path", []string{"model.path="}, "model.path", "required"},
		{"input size", []string{"model.input.size=[0, 224]"}, "model.input.size", "must be two sizes > 0"},
		{"crop", []string{"model.input.crop=random"}, "model.input.crop", "is not one of center, none"},
		{"resize below size", []string{"model.input.resize=200", "model.input.crop=center"}, "model.input.resize", "200 is smaller than model.input.size"},
		{"center crop without resize", []string{"model.input.crop=center"}, "model.input.crop", "center needs model.input.resize"},
		{"resize without a crop", []string{"model.input.resize=256"}, "model.input.resize", "is only used with crop: center"},
		{"negative resize", []string{"model.input.resize=-1"}, "model.input.resize", "must be > 0"},
		{"std zero", []string{"model.input.std.1=0"}, "model.input.std", "must all be > 0"},
		{"mean nan", []string{"model.input.mean.0=.nan"}, "model.input.mean", "must be finite"},
		{"pixel range", []string{"model.input.pixel_range=[1, 0]"}, "model.input.pixel_range", "low < high"},
		{"data root", []string{"data.root="}, "data.root", "required"},
		{"max images", []string{"data.max_images=0"}, "data.max_images", "0 must be > 0"},
		{"batch size", []string{"data.batch_size=-1"}, "data.batch_size", "-1 must be > 0"},

		{"duplicate layer", []string{"tcav.layers=[l1, l1]"}, "tcav.layers", `"l1" is listed twice`},
		{"empty target", []string{"tcav.targets=[zebra, '']"}, "tcav.targets.1", "required"},
		{"targets without concepts", []string{"tcav.concepts=[]"}, "tcav.concepts", "required when tcav.targets is set"},
		{"targets without layers", []string{"tcav.layers=[]"}, "tcav.layers", "required when tcav.targets is set"},
		{"empty class set", []string{"tcav.class_sets.zebra=''"}, "tcav.class_sets.zebra", "required"},
		{"one random set by count", []string{"tcav.random.count=1"}, "tcav.random.count", "1 random sets; need at least 2"},
		{"one random set by list", []string{"tcav.random=[r]"}, "tcav.random", "1 random sets; need at least 2"},
		{"no random prefix", []string{"tcav.random.prefix="}, "tcav.random", "0 random sets; need at least 2"},
		{"duplicate random set", []string{"tcav.random=[a, b, a]"}, "tcav.random", `"a" is listed twice`},
		{"random set is a concept", []string{"tcav.random=[a, striped, c]"}, "tcav.random", `"striped" is also a concept`},
		{"too many random sets", []string{"tcav.random.count=1000000"}, "tcav.random.count", "is more than"},
		{"classifier", []string{"tcav.cav.classifier=svm"}, "tcav.cav.classifier", "is not one of sgd-hinge, logistic, mean-diff"},
		{"cav alpha negative", []string{"tcav.cav.alpha=-1"}, "tcav.cav.alpha", "must be >= 0"},
		{"cav alpha zero with optimal lr", []string{"tcav.cav.alpha=0"}, "tcav.cav.alpha", "must be > 0 with lr 0"},
		{"cav epochs", []string{"tcav.cav.epochs=0"}, "tcav.cav.epochs", "must be > 0"},
		{"test fraction zero", []string{"tcav.cav.test_fraction=0"}, "tcav.cav.test_fraction", "must be > 0 and < 1"},
		{"test fraction one", []string{"tcav.cav.test_fraction=1"}, "tcav.cav.test_fraction", "must be > 0 and < 1"},
		{"cav lr", []string{"tcav.cav.lr=-0.1"}, "tcav.cav.lr", "must be >= 0"},
		{"significance alpha", []string{"tcav.significance.alpha=1.5"}, "tcav.significance.alpha", "must be > 0 and < 1"},
		{"significance test", []string{"tcav.significance.test=welch"}, "tcav.significance.test", "is not one of calibrated, two-sample, one-sample"},

		{"attack concept", []string{"attack.0.concept="}, "attack.0.concept", "required"},
		{"adaptive purification", []string{"attack.0.adaptive.purifications=[jpeg50]"}, "attack.0.adaptive.purifications", `"jpeg50" is not one of jpeg90, jpeg75, blur, resize, bits5`},
		{"adaptive purification twice", []string{"attack.0.adaptive.purifications=[blur, blur]"}, "attack.0.adaptive.purifications", `"blur" is listed twice`},
		{"adaptive shift without purifications", []string{"attack.0.adaptive.shift_weight=1"}, "attack.0.adaptive.shift_weight", "needs adaptive.purifications"},
		{"adaptive alignment with collision", []string{"attack.0.objective=feature-collision",
			"attack.0.adaptive={purifications: [blur], alignment_weight: 100}"}, "attack.0.adaptive.alignment_weight", "needs objective tcav-surrogate"},
		{"adaptive alignment without purifications", []string{"attack.0.adaptive.alignment_weight=5"}, "attack.0.adaptive.alignment_weight", "needs adaptive.purifications"},
		{"adaptive shift negative", []string{"attack.0.adaptive={purifications: [blur], shift_weight: -1}"}, "attack.0.adaptive.shift_weight", "must be >= 0"},
		{"attack target", []string{"attack.0.target="}, "attack.0.target", "required"},
		{"attack layer", []string{"attack.0.layer="}, "attack.0.layer", "required"},
		{"goal", []string{"attack.0.goal=hide"}, "attack.0.goal", "is not one of suppress, promote"},
		{"objective", []string{"attack.0.objective=pgd"}, "attack.0.objective", "is not one of tcav-surrogate, feature-collision"},
		{"toward with surrogate", []string{"attack.0.toward=dotted"}, "attack.0.toward", "only used by objective feature-collision"},
		{"toward itself", []string{"attack.0.objective=feature-collision", "attack.0.toward=striped"}, "attack.0.toward", "the attacked concept itself"},
		{"promote toward random", []string{"attack.0.objective=feature-collision", "attack.0.goal=promote"}, "attack.0.toward", "needs a concept"},
		{"norm", []string{"attack.0.norm=l1"}, "attack.0.norm", "is not one of linf, l2"},
		{"eps zero", []string{"attack.0.eps=0"}, "attack.0.eps", "0 is out of range: want 0 < eps < 1"},
		{"eps negative", []string{"attack.0.eps=-0.01"}, "attack.0.eps", "-0.01 is out of range"},
		{"eps one", []string{"attack.0.eps=1"}, "attack.0.eps", "1 is out of range"},
		{"eps in a list", []string{"attack.0.eps=[0.01, 8]"}, "attack.0.eps", "8 is out of range"},
		{"eps of the second attack", []string{"attack=[{concept: striped, target: zebra, layer: l1}, {concept: dotted, target: zebra, layer: l1, eps: 1.5}]"},
			"attack.1.eps", "1.5 is out of range"},
		{"eps nan", []string{"attack.0.eps=.nan"}, "attack.0.eps", "out of range"},
		{"eps empty", []string{"attack.0.eps=[]"}, "attack.0.eps", "needs at least one budget"},
		{"eps twice", []string{"attack.0.eps=[0.01, 0.01]"}, "attack.0.eps", "0.01 is listed twice"},
		{"step", []string{"attack.0.step=0"}, "attack.0.step", "must be > 0"},
		{"steps", []string{"attack.0.steps=0"}, "attack.0.steps", "must be > 0"},
		{"momentum", []string{"attack.0.momentum=-1"}, "attack.0.momentum", "must be >= 0"},
		{"tau", []string{"attack.0.tau=0"}, "attack.0.tau", "must be > 0"},
		{"judge one", []string{"attack.0.judge_random=1"}, "attack.0.judge_random", "judging needs at least 2"},
		{"judge all", []string{"attack.0.judge_random=10"}, "attack.0.judge_random", "holding out 10 of 10 random sets leaves none"},
		{"judge with two random sets", []string{"tcav.random.count=2"}, "attack.0.judge_random", "holding out 2 of 2"},

		{"facet target", []string{"facets.0.target=''"}, "facets.0.target", "required"},
		{"facet channel", []string{"facets.0.target={layer: l, channel: -1}"}, "facets.0.target.channel", "must be >= 0"},
		{"facet", []string{"facets.0.facet="}, "facets.0.facet", "required"},
		{"facet layers", []string{"facets.0.facet_layers=[]"}, "facets.0.facet_layers", "required"},
		{"strength order", []string{"facets.0.strength=[5, 0.1]"}, "facets.0.strength", "first <= last"},
		{"strength inf", []string{"facets.0.strength=[0, .inf]"}, "facets.0.strength", "first <= last"},
		{"facet batch", []string{"facets.0.batch=0"}, "facets.0.batch", "must be > 0"},
		{"facet size", []string{"facets.0.size=0"}, "facets.0.size", "must be > 0"},
		{"facet steps", []string{"facets.0.steps=0"}, "facets.0.steps", "must be > 0"},
		{"facet lr", []string{"facets.0.lr=0"}, "facets.0.lr", "must be > 0"},
		{"compare without attack", []string{"facets.0.compare_attack=true", "facets.0.facet=dotted"},
			"facets.0.compare_attack", `no attack on concept "dotted"`},
		{"nothing to do", []string{"tcav.targets=[]", "attack=[]", "facets=[]"}, "tcav.targets", "nothing to do"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, "x.yaml", base)
			_, err := Load(path, tt.overrides)
			if tt.key == "" {
				if err != nil {
					t.Fatalf("valid config: %v", err)
				}
				return
			}
			wantErr(t, err, tt.key+": ", tt.want)
			var e *Error
			if !errors.As(err, &e) || e.Key != tt.key {
				t.Errorf("error %v: want an *Error with key %q", err, tt.key)
			}
			if e != nil && e.Pos == "" {
				t.Errorf("error %v has no position", err)
			}
		})
	}
}

// Validation errors point at the line the bad value is on, or at the
// enclosing key when the value is a default.
func TestValidationPosition(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // after "<file>"
	}{
		{"value in the file", strings.Replace(base, "    layer: l1\n", "    layer: l1\n    eps: [0.01, 1.5]\n", 1),
			`:11: attack.0.eps: 1.5 is out of range: want 0 < eps < 1 (pixel scale [0, 1])`},
		{"default under a key of the file", strings.Replace(base, "    layer: l1\n", "    layer: l1\n    objective: feature-collision\n    goal: promote\n", 1),
			`:8: attack.0.toward: goal promote with feature-collision needs a concept`},
		{"default with no key in the file", strings.Replace(base, "model:\n  path: m.pt\n", "", 1),
			`: model.path: required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, "x.yaml", tt.text)
			_, err := Load(path, nil)
			wantErr(t, err, path+tt.want)
		})
	}
}

// Validate works on a Config built in Go, without a file.
func TestValidateDirect(t *testing.T) {
	c := Default()
	c.Name = "n"
	c.Model.Path = "m.pt"
	c.Facets = []Facet{DefaultFacet()}
	c.Facets[0].Target = FacetTarget{Class: "zebra"}
	c.Facets[0].Facet = "striped"
	c.Facets[0].FacetLayers = []string{"l"}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.Facets[0].Strength = [2]float64{3, 1}
	err := c.Validate()
	wantErr(t, err, "facets.0.strength: [3 1] must be [first, last] with first <= last")
	if strings.HasPrefix(err.Error(), ":") {
		t.Errorf("error without a file starts with a colon: %q", err)
	}
}
