package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cavforge/cavforge/pipeline/config"
	"github.com/cavforge/cavforge/pipeline/report"
)

// PoisonedFrom is the folder, in the run directory f.PoisonedFrom, of that
// run's poisoned facet concept set: its attack on the concept (one for the
// same target first) at its largest budget, as for this run's own attack.
func PoisonedFrom(f config.Facet) (string, error) {
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
