package run

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/report"
)

// StageNames are the stages --stages can choose, in the order they run.
var StageNames = []string{"tcav", "attack", "audit", "facets"}

// CheckStages checks, before any work, that the chosen stages (none: all)
// have what they need: a facet with compare_attack needs the poisoned set
// that the attack stage writes, or an earlier run's (facets.N.poisoned_from).
func CheckStages(cfg *config.Config, stages []string) error {
	for _, s := range stages {
		if !slices.Contains(StageNames, s) {
			return fmt.Errorf("--stages: unknown stage %q (%s)", s, strings.Join(StageNames, ", "))
		}
	}
	chosen := func(s string) bool { return len(stages) == 0 || slices.Contains(stages, s) }
	if !chosen("facets") {
		return nil
	}
	for i, f := range cfg.Facets {
		if !f.CompareAttack {
			continue
		}
		if f.PoisonedFrom != "" {
			if _, err := poisonedSet(f); err != nil {
				return fmt.Errorf("facets.%d.poisoned_from: %w", i, err)
			}
			continue
		}
		if !chosen("attack") {
			return fmt.Errorf("facets.%d.compare_attack: the poisoned %s set comes from the attack stage, which --stages %s leaves out; "+
				"add attack to --stages, or set facets.%d.poisoned_from to an earlier run directory", i, f.Facet, strings.Join(stages, ","), i)
		}
	}
	return nil
}

// poisonedSet is the folder, in the run directory f.PoisonedFrom, of that
// run's poisoned facet concept set: its attack on the concept (one for the
// same target first) at its largest budget, as for this run's own attack.
func poisonedSet(f config.Facet) (string, error) {
	res, err := report.ReadJSON(filepath.Join(f.PoisonedFrom, report.ResultsFile))
	if err != nil {
		return "", fmt.Errorf("%s is not a finished run: %w", f.PoisonedFrom, err)
	}
	var chosen *report.AttackEntry
	for i, a := range res.Attack {
		if a.Concept != f.Facet {
			continue
		}
		better := chosen == nil ||
			(chosen.Target != f.Target.Class && a.Target == f.Target.Class) ||
			(chosen.Target == a.Target && a.Eps > chosen.Eps)
		if better {
			chosen = &res.Attack[i]
		}
	}
	if chosen == nil {
		return "", fmt.Errorf("the run %s has no attack on concept %q", f.PoisonedFrom, f.Facet)
	}
	dir := filepath.Join(f.PoisonedFrom, filepath.FromSlash(strings.TrimSuffix(chosen.Images, "/")))
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("the run %s lists its poisoned %s set at %s, which is not there", f.PoisonedFrom, f.Facet, dir)
	}
	return dir, nil
}
