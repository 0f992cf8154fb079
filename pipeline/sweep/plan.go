package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
)

// PlanFile is the plan's name in the sweep directory.
const PlanFile = "sweep.json"

// Plan is sweep.json: the numbered tasks of a sweep, for people and for the
// Slurm scripts (which count "tasks").
type Plan struct {
	Sweep string   `json:"sweep"`
	Base  string   `json:"base"`
	Dir   string   `json:"dir"`
	Keys  []string `json:"keys"`
	Tasks []Task   `json:"tasks"`
}

// Plan returns the sweep's plan.
func (s *Sweep) Plan() *Plan {
	return &Plan{Sweep: s.File, Base: s.Base, Dir: s.Dir, Keys: s.Keys(), Tasks: s.Tasks()}
}

// WritePlan checks that every task's config loads (so that a grid value
// that does not fit the base config fails now, not on a compute node) and
// writes <dir>/sweep.json atomically. Planning again is a no-op; planning a
// different grid into a directory where tasks have run is an error.
func (s *Sweep) WritePlan() error {
	for i := range s.Len() {
		if _, err := s.Config(i); err != nil {
			t, _ := s.Task(i)
			return fmt.Errorf("%s: task %d (%s): %w", s.File, i, t.text(), err)
		}
	}
	return s.writePlan()
}

func (s *Sweep) writePlan() error {
	p := s.Plan()
	old, err := ReadPlan(s.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case p.same(old):
		return nil
	case s.started():
		return fmt.Errorf("%s holds a different plan (%d tasks from %s) and tasks have run there; set out: in %s to plan this grid elsewhere, or remove the directory",
			filepath.Join(s.Dir, PlanFile), len(old.Tasks), old.Sweep, s.File)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "tasks"), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.Dir, PlanFile), append(b, '\n'))
}

// checkPlan makes sure that the sweep file still describes the plan in its
// directory, when there is one, so that task N means the same thing to every
// process.
func (s *Sweep) checkPlan() error {
	old, err := ReadPlan(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !s.Plan().same(old) {
		return fmt.Errorf("%s changed since it was planned into %s (%d tasks then, %d now); run cavforge sweep plan again",
			s.File, filepath.Join(s.Dir, PlanFile), len(old.Tasks), s.Len())
	}
	return nil
}

// ReadPlan reads dir/sweep.json.
func ReadPlan(dir string) (*Plan, error) {
	b, err := os.ReadFile(filepath.Join(dir, PlanFile))
	if err != nil {
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, PlanFile), err)
	}
	return &p, nil
}

// same compares what task numbers mean: the base and every task's overrides.
func (p *Plan) same(q *Plan) bool {
	if p.Base != q.Base || !slices.Equal(p.Keys, q.Keys) || len(p.Tasks) != len(q.Tasks) {
		return false
	}
	for i := range p.Tasks {
		if !slices.Equal(p.Tasks[i].Overrides, q.Tasks[i].Overrides) {
			return false
		}
	}
	return true
}

// started reports whether anything has been written under tasks/.
func (s *Sweep) started() bool {
	entries, _ := os.ReadDir(filepath.Join(s.Dir, "tasks"))
	return len(entries) > 0
}
