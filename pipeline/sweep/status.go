package sweep

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/run"
)

// State is where a task stands.
type State string

const (
	Done    State = "done"    // tasks/N has results.json and manifest.json
	Running State = "running" // a process holds the task's lock
	Failed  State = "failed"  // the last attempt failed or was killed
	Missing State = "missing" // never run (or queued)
)

// TaskStatus is one task's state, read from the sweep directory.
type TaskStatus struct {
	Task      int      `json:"task"`
	State     State    `json:"state"`
	Overrides []string `json:"overrides"`
	// Dir is the run directory of a done task.
	Dir string `json:"dir,omitempty"`
	// Seconds is a done task's run time, from its manifest.
	Seconds float64 `json:"seconds,omitempty"`
	// Detail is the error of a failed task and who runs a running one.
	Detail string `json:"detail,omitempty"`
}

// Status reads every task's state from the sweep directory.
func (s *Sweep) Status() ([]TaskStatus, error) {
	if err := s.checkPlan(); err != nil {
		return nil, err
	}
	out := make([]TaskStatus, s.Len())
	for i, t := range s.Tasks() {
		out[i] = s.status(t)
	}
	return out, nil
}

func (s *Sweep) status(t Task) TaskStatus {
	i := t.Index
	st := TaskStatus{Task: i, State: Missing, Overrides: t.Overrides}
	if ok, who := s.running(i); ok {
		st.State, st.Detail = Running, who
		return st
	}
	dir := s.TaskDir(i)
	if done(dir) {
		st.State, st.Dir = Done, dir
		if m, err := readManifest(dir); err == nil && !m.Start.IsZero() {
			st.Seconds = m.End.Sub(m.Start).Seconds()
		}
		return st
	}
	if b, err := os.ReadFile(s.failedPath(i)); err == nil {
		var f Failure
		if json.Unmarshal(b, &f) == nil {
			st.State, st.Detail = Failed, f.Error
			if f.Job != "" {
				st.Detail += " (Slurm job " + f.Job + ")"
			}
			return st
		}
	}
	if partials, _ := filepath.Glob(filepath.Join(s.Dir, "tasks", run.PartialPrefix(fmt.Sprint(i))+"*")); len(partials) > 0 {
		st.State = Failed
		st.Detail = fmt.Sprintf("interrupted: the process died before the run finished (left %s)", filepath.Base(partials[0]))
	}
	return st
}

func readManifest(dir string) (*run.Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, report.ManifestFile))
	if err != nil {
		return nil, err
	}
	var m run.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Count tallies tasks by state.
func Count(sts []TaskStatus) map[State]int {
	n := map[State]int{}
	for _, st := range sts {
		n[st.State]++
	}
	return n
}
