package plan

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/model"
	"github.com/cavforge/cavforge/pipeline/report"
)

var threeClasses = model.Classes{N: 3, Labels: []string{"cat", "zebra", "dog"}}

func quietLog() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return log
}

// testPlan resolves a config with the given attacks against a three-class
// model, with every set the config names listed by name only (no images
// are read).
func testPlan(t *testing.T, attacks ...config.Attack) *Plan {
	t.Helper()
	cfg := config.Default()
	cfg.TCAV.Concepts, cfg.TCAV.Targets, cfg.TCAV.Layers = []string{"stripes", "dots", "plain"}, nil, nil
	cfg.TCAV.Random.Sets = []string{"r0", "r1", "r2", "r3"}
	cfg.Attack = attacks
	p, err := New(cfg, threeClasses, model.Input{Size: [2]int{32, 32}}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range append(append([]string{"zebra", "cat"}, cfg.TCAV.Concepts...), cfg.TCAV.Random.Sets...) {
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

// Two attacks on one concept, target and layer with a budget in common
// would write one folder: the later one's gets the suffix attack<i>.
func TestAttacksSharingABudgetGetFoldersApart(t *testing.T) {
	p := testPlan(t, attackOn("zebra", 0.01, 0.02), attackOn("zebra", 0.02), attackOn("cat", 0.03), attackOn("zebra", 0.05))
	for i, want := range []string{"", "attack1", "", ""} {
		if got := p.Attack(i).Variant; got != want {
			t.Errorf("attack %d: variant %q, want %q", i, got, want)
		}
	}
}

// An attack's spec has its class, class images, and the random sets it
// sees apart from the judge_random it is judged on.
func TestAttackSpecSplitsTheRandomSets(t *testing.T) {
	p := testPlan(t, attackOn("zebra", 0.01))
	a := p.Attack(0)
	if a.Class != 1 || a.ClassImages.Name != "zebra" || a.Concept.Name != "stripes" {
		t.Errorf("class %d images %q concept %q, want 1 zebra stripes", a.Class, a.ClassImages.Name, a.Concept.Name)
	}
	if !slices.Equal(names(a.Seen), []string{"r0", "r1", "r2"}) || !slices.Equal(names(a.Judge), []string{"r3"}) {
		t.Errorf("sees %v and is judged on %v, want r0..r2 and r3 (judge_random 1)", names(a.Seen), names(a.Judge))
	}
	if got := p.Significance().Tests; got != 3 {
		t.Errorf("Bonferroni over %d tests, want the 3 TCAV concepts", got)
	}
}

// compare_attack reads the poisoned set for the facet's own target at its
// largest budget, and an earlier run's results.json (poisoned_from) gives
// the same folder as this run's own attack stage.
func TestCompareAttackReadsTheAttackForItsOwnTargetAsPoisonedFromDoes(t *testing.T) {
	attacks := []config.Attack{attackOn("cat", 0.01), attackOn("zebra", 0.01, 0.02), attackOn("zebra", 0.04), attackOn("zebra", 0.04)}
	p := testPlan(t, attacks...)
	run := t.TempDir()
	var res report.Results
	for i, a := range attacks {
		for _, eps := range a.Eps {
			dir := attack.Dir(a.Concept, a.Target, a.Layer, eps, attackVariant(attacks, i))
			if err := os.MkdirAll(filepath.Join(run, dir), 0o755); err != nil {
				t.Fatal(err)
			}
			res.Attack = append(res.Attack, attack.Entry{Concept: a.Concept, Target: a.Target, Layer: a.Layer, Eps: eps, Images: dir + "/"})
		}
	}
	data, err := json.Marshal(res) // only what PoisonedFrom reads: not a valid results.json
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, report.ResultsFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]string{
		"zebra": attack.Dir("stripes", "zebra", "l1", 0.04, ""), // the largest zebra budget, the earlier of two
		"cat":   attack.Dir("stripes", "cat", "l1", 0.01, ""),
		"dog":   attack.Dir("stripes", "cat", "l1", 0.01, ""), // none for dog: the first attack's largest
	} {
		f := config.Facet{Facet: "stripes", Target: config.FacetTarget{Class: target}, PoisonedFrom: run}
		got, err := p.attackedSetDir(f)
		if err != nil || got != want {
			t.Errorf("facet on %s reads %q (%v), want %q", target, got, err, want)
		}
		from, err := PoisonedFrom(f)
		if err != nil || from != filepath.Join(run, filepath.FromSlash(want)) {
			t.Errorf("facet on %s, poisoned_from: %q (%v), want %q", target, from, err, want)
		}
	}
	if _, err := p.attackedSetDir(config.Facet{Facet: "dots", Target: config.FacetTarget{Class: "cat"}}); err == nil {
		t.Error("compare_attack on a concept no attack poisons: no error")
	}
}

// An audit in a run without TCAV targets audits the attacked classes at
// the attacked layers, each once, and calibrates on every random set when
// there are fewer than audit.calibration_sets.
func TestAuditWithoutTCAVTargetsAuditsTheAttackedClasses(t *testing.T) {
	p := testPlan(t, attackOn("zebra", 0.01), attackOn("cat", 0.01), attackOn("zebra", 0.02))
	p.cfg.Audit = config.DefaultAudit()
	p.cfg.Audit.Enabled, p.cfg.Audit.Attacked, p.cfg.Audit.Concepts = true, false, []string{"stripes"}
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
	if _, err := New(cfg, threeClasses, model.Input{}, nil, quietLog()); err == nil {
		t.Error("attack on giraffe, not a class: no error")
	}
}

// tcav.cav.lr reaches the SGD classifiers, the CAV's and the transfer's.
func TestCAVLearningRateReachesTheClassifier(t *testing.T) {
	cfg := config.Default()
	cfg.TCAV.CAV.LR = 0.02
	p, err := New(cfg, threeClasses, model.Input{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []cav.Method{p.Method, p.transfer} {
		sgd, ok := m.Classifier.(cav.SGD)
		if !ok || sgd.LR != 0.02 {
			t.Errorf("%s: classifier %+v, want SGD with LR 0.02", m.Name, m.Classifier)
		}
	}
}
