package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/attack"
	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/images"
	"github.com/cavforge/cavforge/pipeline/report"
)

// poisoned is a poisoned concept set an attack writes: its class, its
// budget and its folder, relative to the run directory.
type poisoned struct {
	target string
	eps    float64
	dir    string
}

// choosePoisoned is the poisoned set a facet on target reads, of those an
// attack on its concept wrote, in the order results.json lists them: one
// for the same target first, then the largest budget, the earlier on a tie.
// This run's attack stage and an earlier run's (poisoned_from) choose by it
// alike, so `--stages facets` with poisoned_from renders what the whole run
// would.
func choosePoisoned(sets []poisoned, target string) (poisoned, bool) {
	var chosen *poisoned
	for i, s := range sets {
		better := chosen == nil ||
			(chosen.target != target && s.target == target) ||
			(chosen.target == s.target && s.eps > chosen.eps)
		if better {
			chosen = &sets[i]
		}
	}
	if chosen == nil {
		return poisoned{}, false
	}
	return *chosen, true
}

// PoisonedFrom is the folder, in the run directory f.PoisonedFrom, of that
// run's poisoned facet concept set (see choosePoisoned).
func PoisonedFrom(f config.Facet) (string, error) {
	res, err := report.ReadJSON(filepath.Join(f.PoisonedFrom, report.ResultsFile))
	if err != nil {
		return "", fmt.Errorf("%s is not a finished run: %w", f.PoisonedFrom, err)
	}
	var sets []poisoned
	for _, a := range res.Attack {
		if a.Concept == f.Facet {
			sets = append(sets, poisoned{a.Target, a.Eps, strings.TrimSuffix(a.Images, "/")})
		}
	}
	chosen, ok := choosePoisoned(sets, f.Target.Class)
	if !ok {
		return "", fmt.Errorf("the run %s has no attack on concept %q", f.PoisonedFrom, f.Facet)
	}
	dir := filepath.Join(f.PoisonedFrom, filepath.FromSlash(chosen.dir))
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("the run %s lists its poisoned %s set at %s, which is not there", f.PoisonedFrom, f.Facet, dir)
	}
	return dir, nil
}

// attackedSetDir is the run-relative folder of the poisoned facet concept
// set this run's attack stage writes (see choosePoisoned), named as the
// attack stage names it.
func (p *Plan) attackedSetDir(f config.Facet) (string, error) {
	var sets []poisoned
	for i, a := range p.cfg.Attack {
		if a.Concept != f.Facet {
			continue
		}
		for _, eps := range a.Eps {
			sets = append(sets, poisoned{a.Target, eps, attack.Dir(a.Concept, a.Target, a.Layer, eps, attackVariant(p.cfg.Attack, i))})
		}
	}
	chosen, ok := choosePoisoned(sets, f.Target.Class)
	if !ok {
		return "", fmt.Errorf("compare_attack: no attack on concept %q", f.Facet)
	}
	return chosen.dir, nil
}

// facetPoisoned is the poisoned facet concept set of compare_attack: this
// run's attack's under dir, or that of the run poisoned_from names.
func (p *Plan) facetPoisoned(f config.Facet, dir string) (*activations.Set, string, error) {
	root, rel := dir, ""
	var err error
	if f.PoisonedFrom != "" {
		abs, err := PoisonedFrom(f)
		if err != nil {
			return nil, "", fmt.Errorf("poisoned_from: %w", err)
		}
		root, rel = filepath.Dir(abs), filepath.Base(abs)
	} else if rel, err = p.attackedSetDir(f); err != nil {
		return nil, "", err
	}
	files, err := images.ListSet(root, rel, false, p.log)
	if err != nil {
		return nil, "", fmt.Errorf("compare_attack: the attack stage left no poisoned %s images at %s: %w", f.Facet, rel, err)
	}
	if f.PoisonedFrom != "" {
		rel = filepath.Join(root, rel)
		p.log.WithField("facet", f.Facet).Infof("compare_attack: the poisoned %s set is %s's (%d images)", f.Facet, rel, len(files))
	}
	hash, err := images.ListHash(root, files)
	if err != nil {
		return nil, "", err
	}
	return &activations.Set{Name: f.Facet, Files: files, Hash: hash}, rel, nil
}
