package plan

import (
	"io"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/model"
)

// testPlan resolves cfg against a three-class model, with every set the
// config names listed by name only (no images are read).
func testPlan(t *testing.T, cfg *config.Config) *Plan {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	p, err := New(cfg, model.Classes{N: 3, Labels: []string{"cat", "zebra", "dog"}}, model.Input{Size: [2]int{32, 32}}, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range append(append([]string{"stripes", "zebra", "cat"}, cfg.TCAV.Concepts...), cfg.TCAV.Random.Sets...) {
		p.Sets[n] = activations.Set{Name: n, Hash: "h-" + n}
	}
	return p
}

func attackOn(target string, eps ...float64) config.Attack {
	a := config.DefaultAttack()
	a.Concept, a.Target, a.Layer, a.Eps, a.JudgeRandom = "stripes", target, "l1", eps, 1
	return a
}

func names(sets []activations.Set) []string {
	var out []string
	for _, s := range sets {
		out = append(out, s.Name)
	}
	return out
}

// Two attacks on one concept, target and layer with a budget in common get
// folders apart; the facet of compare_attack reads the attack for its own
// target at its largest budget; the audit without TCAV targets audits the
// attacked classes at the attacked layers.
func TestSpecsResolveSetsClassesAndFolders(t *testing.T) {
	cfg := config.Default()
	cfg.TCAV.Concepts, cfg.TCAV.Targets, cfg.TCAV.Layers = []string{"stripes", "dots", "plain"}, nil, nil
	cfg.TCAV.Random.Sets = []string{"r0", "r1", "r2", "r3"}
	cfg.Attack = []config.Attack{attackOn("zebra", 0.01, 0.02), attackOn("zebra", 0.02), attackOn("cat", 0.03), attackOn("zebra", 0.05)}
	p := testPlan(t, cfg)

	for i, want := range []string{"", "attack1", "", ""} {
		if got := p.Attack(i).Variant; got != want {
			t.Errorf("attack %d: variant %q, want %q", i, got, want)
		}
	}
	a := p.Attack(0)
	if a.Class != 1 || a.ClassImages.Name != "zebra" || a.Concept.Name != "stripes" {
		t.Errorf("attack 0: class %d images %q concept %q, want 1 zebra stripes", a.Class, a.ClassImages.Name, a.Concept.Name)
	}
	if !slices.Equal(names(a.Seen), []string{"r0", "r1", "r2"}) || !slices.Equal(names(a.Judge), []string{"r3"}) {
		t.Errorf("attack 0 sees %v and is judged on %v, want r0..r2 and r3 (judge_random 1)", names(a.Seen), names(a.Judge))
	}
	if got := p.Significance().Tests; got != 3 {
		t.Errorf("Bonferroni over %d tests, want the 3 TCAV concepts", got)
	}

	for target, want := range map[string]string{
		"zebra": attack.Dir("stripes", "zebra", "l1", 0.02, ""), // the first attack for the target
		"cat":   attack.Dir("stripes", "cat", "l1", 0.03, ""),
		"dog":   attack.Dir("stripes", "zebra", "l1", 0.02, ""), // none for dog: the first one
	} {
		got, err := p.attackedSetDir(config.Facet{Facet: "stripes", Target: config.FacetTarget{Class: target}})
		if err != nil || got != want {
			t.Errorf("facet on %s reads %q (%v), want %q", target, got, err, want)
		}
	}
	if _, err := p.attackedSetDir(config.Facet{Facet: "dots", Target: config.FacetTarget{Class: "cat"}}); err == nil {
		t.Error("compare_attack on a concept no attack poisons: no error")
	}

	cfg.Audit = config.DefaultAudit()
	cfg.Audit.Enabled, cfg.Audit.Attacked, cfg.Audit.Concepts = true, false, []string{"stripes"}
	au, err := p.Audit(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, tg := range au.Targets {
		targets = append(targets, tg.Name)
	}
	if !slices.Equal(targets, []string{"zebra", "cat"}) || !slices.Equal(au.Layers, []string{"l1"}) {
		t.Errorf("audit targets %v layers %v, want the attacked [zebra cat] at [l1]", targets, au.Layers)
	}
	if au.Calibrating != 4 || len(au.Subjects) != 1 || au.Subjects[0].Set.Name != "stripes" {
		t.Errorf("audit calibrates on %d sets and audits %d subjects, want 4 (all random sets) and stripes", au.Calibrating, len(au.Subjects))
	}
	if h := p.Hashes(); len(h) != len(p.Sets) || h["r3"] != "h-r3" {
		t.Errorf("hashes %v", h)
	}
}

// A target that is no class of the model is refused when the plan is made.
func TestNewRefusesAnUnknownTarget(t *testing.T) {
	cfg := config.Default()
	cfg.Attack = []config.Attack{attackOn("giraffe", 0.01)}
	if _, err := New(cfg, model.Classes{N: 3, Labels: []string{"cat", "zebra", "dog"}}, model.Input{}, logrus.New()); err == nil {
		t.Error("attack on giraffe, not a class: no error")
	}
}
