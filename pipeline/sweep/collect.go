package sweep

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/present"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/stats"
)

// Files that Collect writes into the sweep directory.
const (
	CollectCSV  = "collect.csv"
	CollectJSON = "collect.json"
	PlotsDir    = "plots"
)

// Collection is every done task's results, one row per TCAV entry and per
// attack entry, with the task's grid values.
type Collection struct {
	Sweep string   `json:"sweep"`
	Keys  []string `json:"keys"`
	// NotDone are the tasks without results (failed, missing or running).
	NotDone []int `json:"not_done"`
	Rows    []Row `json:"rows"`

	grid []Axis
}

// Row is one entry of one task's results.json.
type Row struct {
	Task   int                 `json:"task"`
	Values map[string]any      `json:"values"`
	Kind   string              `json:"kind"` // "tcav" or "attack"
	TCAV   *report.TCAVEntry   `json:"tcav,omitempty"`
	Attack *report.AttackEntry `json:"attack,omitempty"`

	texts []string // the grid values as --set text, in key order
}

// Collect reads the results of every done task. It is an error when no task
// is done.
func (s *Sweep) Collect() (*Collection, error) {
	sts, err := s.Status()
	if err != nil {
		return nil, err
	}
	c := &Collection{Sweep: s.File, Keys: s.Keys(), NotDone: []int{}, Rows: []Row{}, grid: s.Grid}
	for _, st := range sts {
		if st.State != Done {
			c.NotDone = append(c.NotDone, st.Task)
			continue
		}
		res, err := report.ReadJSON(filepath.Join(st.Dir, report.ResultsFile))
		if err != nil {
			return nil, fmt.Errorf("task %d: %w", st.Task, err)
		}
		t, _ := s.Task(st.Task)
		texts := make([]string, len(t.Overrides))
		for k, o := range t.Overrides {
			_, texts[k], _ = strings.Cut(o, "=")
		}
		for i := range res.TCAV {
			c.Rows = append(c.Rows, Row{Task: t.Index, Values: t.Values, Kind: "tcav", TCAV: &res.TCAV[i], texts: texts})
		}
		for i := range res.Attack {
			c.Rows = append(c.Rows, Row{Task: t.Index, Values: t.Values, Kind: "attack", Attack: &res.Attack[i], texts: texts})
		}
	}
	if len(c.NotDone) == s.Len() {
		return nil, fmt.Errorf("no task of %s is done yet (%d tasks; see cavforge sweep status)", s.File, s.Len())
	}
	return c, nil
}

// Write writes collect.csv, collect.json and one chart per grid key,
// plots/tcav-vs-<key>.png, into dir, atomically. It returns the paths.
func (c *Collection) Write(dir string) ([]string, error) {
	var files []string
	write := func(name string, fill func(io.Writer) error) error {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		files = append(files, p)
		return atomicfile.WriteWith(p, fill)
	}
	if err := write(CollectCSV, c.EncodeCSV); err != nil {
		return nil, err
	}
	if err := write(CollectJSON, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(c)
	}); err != nil {
		return nil, err
	}
	charts, err := c.Charts()
	if err != nil {
		return nil, err
	}
	for _, ch := range charts {
		if err := write(filepath.Join(PlotsDir, ch.Name), func(w io.Writer) error {
			_, err := w.Write(ch.PNG)
			return err
		}); err != nil {
			return nil, err
		}
	}
	return files, nil
}

var csvColumns = []string{
	"kind", "target", "concept", "layer",
	"mean", "std", "p_value", "significant", "direction", "random_mean", "cav_accuracy",
	"goal", "objective", "norm", "eps",
	"before_mean", "before_p_value", "before_significant",
	"after_mean", "after_p_value", "after_significant", "after_direction",
	"linf", "l2_mean", "psnr_mean", "changed_prediction",
}

// EncodeCSV writes one line per row: the task, its grid values (as --set
// text) and the entry's numbers; columns that do not apply to a row's kind
// are empty.
func (c *Collection) EncodeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append(append([]string{"task"}, c.Keys...), csvColumns...)); err != nil {
		return err
	}
	for _, r := range c.Rows {
		rec := append([]string{strconv.Itoa(r.Task)}, r.texts...)
		cols := map[string]string{"kind": r.Kind}
		if e := r.TCAV; e != nil {
			cols["target"], cols["concept"], cols["layer"] = e.Target, e.Concept, e.Layer
			cols["mean"], cols["std"], cols["p_value"] = num(e.Mean), num(e.Std), num(e.PValue)
			cols["significant"], cols["direction"] = strconv.FormatBool(e.Significant), string(e.Direction)
			cols["random_mean"], cols["cav_accuracy"] = num(stats.Mean(e.RandomScores)), num(stats.Mean(e.CAVAccuracy))
		}
		if a := r.Attack; a != nil {
			cols["target"], cols["concept"], cols["layer"] = a.Target, a.Concept, a.Layer
			cols["goal"], cols["objective"], cols["norm"], cols["eps"] = a.Goal, a.Objective, a.Norm, num(a.Eps)
			cols["before_mean"], cols["before_p_value"], cols["before_significant"] = num(a.Before.Mean), num(a.Before.PValue), strconv.FormatBool(a.Before.Significant)
			cols["after_mean"], cols["after_p_value"], cols["after_significant"] = num(a.After.Mean), num(a.After.PValue), strconv.FormatBool(a.After.Significant)
			cols["after_direction"] = string(a.After.Direction)
			cols["linf"], cols["l2_mean"], cols["psnr_mean"], cols["changed_prediction"] = num(a.Linf), num(a.L2Mean), num(a.PSNRMean), num(a.ChangedPrediction)
		}
		for _, col := range csvColumns {
			rec = append(rec, cols[col])
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteTable prints the rows for a terminal: per TCAV entry its mean score
// and verdict, per attack its before→after score and the verdict after.
func (c *Collection) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := append(append([]string{"task"}, c.Keys...), "kind", "target", "concept", "layer", "budget", "score", "p", "verdict")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range c.Rows {
		cols := append([]string{strconv.Itoa(r.Task)}, r.texts...)
		switch {
		case r.TCAV != nil:
			e := r.TCAV
			cols = append(cols, "tcav", e.Target, e.Concept, e.Layer, "-",
				fmt.Sprintf("%.3f ± %.3f", e.Mean, e.Std), fmt.Sprintf("%.2g", e.PValue), present.VerdictOf(e.Significant, e.Direction).Text())
		case r.Attack != nil:
			a := r.Attack
			cols = append(cols, "attack", a.Target, a.Concept, a.Layer, fmt.Sprintf("%s %s %g", a.Goal, a.Norm, a.Eps),
				fmt.Sprintf("%.3f → %.3f", a.Before.Mean, a.After.Mean), fmt.Sprintf("%.2g", a.After.PValue), present.VerdictOf(a.After.Significant, a.After.Direction).Text())
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.NotDone) > 0 {
		ids := make([]string, len(c.NotDone))
		for i, t := range c.NotDone {
			ids[i] = strconv.Itoa(t)
		}
		_, err := fmt.Fprintf(w, "not done (no results): tasks %s\n", strings.Join(ids, ","))
		return err
	}
	return nil
}

func num(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
