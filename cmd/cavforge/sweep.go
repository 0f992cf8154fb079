package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"

	"github.com/cavforge/cavforge/pipeline/interrupt"
	"github.com/cavforge/cavforge/pipeline/run"
	"github.com/cavforge/cavforge/pipeline/sweep"
)

const sweepUsage = "cavforge sweep plan|run|status|collect SWEEP.yaml [--task N] [--device D] [--json]"

func runSweep(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: %s", sweepUsage)
	}
	sub, ok := map[string]func([]string) error{
		"plan":    sweepPlan,
		"run":     sweepRun,
		"status":  sweepStatus,
		"collect": sweepCollect,
	}[args[0]]
	if !ok {
		return fmt.Errorf("unknown sweep command %q: want plan, run, status or collect", args[0])
	}
	return sub(args[1:])
}

// sweepFlags parses "SWEEP.yaml [flags]" or "[flags] SWEEP.yaml".
func sweepFlags(name string, args []string, define func(fs *flag.FlagSet)) (*sweep.Sweep, error) {
	fs := flag.NewFlagSet("sweep "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if define != nil {
		define(fs)
	}
	path, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return nil, err
	}
	if path == "" && fs.NArg() > 0 {
		path, rest = fs.Arg(0), fs.Args()[1:]
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
	}
	if path == "" || fs.NArg() > 0 {
		return nil, fmt.Errorf("usage: %s", sweepUsage)
	}
	return sweep.Load(path)
}

func sweepPlan(args []string) error {
	s, err := sweepFlags("plan", args, nil)
	if err != nil {
		return err
	}
	if err := s.WritePlan(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "planned %d tasks over %s into %s/%s\n", s.Len(), strings.Join(s.Keys(), " × "), s.Dir, sweep.PlanFile)
	fmt.Println(s.Dir)
	return nil
}

// sweepRun runs --task N, or the Slurm array element's tasks: element i of
// $SLURM_ARRAY_TASK_ID runs tasks i*K .. i*K+K-1 with K from
// $CAVFORGE_TASKS_PER_ELEMENT (default 1). It goes on after a failed task
// and fails at the end.
func sweepRun(args []string) error {
	task, taskGiven := -1, false
	var device, logFormat string
	s, err := sweepFlags("run", args, func(fs *flag.FlagSet) {
		fs.Func("task", "task index (default: from $SLURM_ARRAY_TASK_ID)", func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("--task %q: want a task index", v)
			}
			task, taskGiven = n, true
			return nil
		})
		fs.StringVar(&device, "device", "", "auto|cpu|cuda|cuda:N (overrides the config)")
		fs.StringVar(&logFormat, "log-format", "", "text|json")
	})
	if err != nil {
		return err
	}
	if taskGiven && (task < 0 || task >= s.Len()) {
		return fmt.Errorf("--task %d is out of range: the sweep has %d tasks (0..%d)", task, s.Len(), s.Len()-1)
	}
	tasks, err := tasksToRun(task, s.Len())
	if err != nil {
		return err
	}
	var extra []string
	if device != "" {
		extra = append(extra, "device="+device)
	}
	log, err := newLogger(logFormat)
	if err != nil {
		return err
	}
	opts := run.Options{Log: log, Version: Version, Commit: Commit()}

	// Slurm sends SIGTERM at the time limit and on scancel: say so in the
	// task's failure marker at once, before the run stops (and again, with
	// the run's own words, when it has).
	var mu sync.Mutex
	current := -1
	defer interrupt.OnSignal(func(sig syscall.Signal) {
		mu.Lock()
		defer mu.Unlock()
		if current >= 0 {
			s.MarkFailed(current, fmt.Errorf("task %d: interrupted by %s", current, signalHint(sig)))
			log.Errorf("task %d: interrupted by %s", current, signalHint(sig))
		}
	})()

	var failed []string
	for _, i := range tasks {
		mu.Lock()
		current = i
		mu.Unlock()
		dir, skipped, err := s.RunTask(i, opts, extra...)
		mu.Lock()
		current = -1
		mu.Unlock()
		switch ie := interrupt.As(err); {
		case ie != nil:
			err = fmt.Errorf("task %d: interrupted by %s: %s", i, signalHint(ie.Signal), ie.Detail)
			if merr := s.MarkFailed(i, err); merr != nil {
				log.Warnf("cannot record the interruption of task %d: %v", i, merr)
			}
			return &interrupt.Error{Signal: ie.Signal, Detail: fmt.Sprintf("task %d: %s", i, ie.Detail)}
		case err != nil && len(tasks) == 1:
			return err
		case err != nil:
			log.Errorf("%s", oneLine(err.Error()))
			failed = append(failed, strconv.Itoa(i))
		case skipped:
			fmt.Printf("task %d: already done (%s), skipped\n", i, dir)
		default:
			fmt.Printf("task %d: done (%s)\n", i, dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d tasks failed: %s (see cavforge sweep status %s)", len(failed), len(tasks), strings.Join(failed, ","), s.File)
	}
	return nil
}

func signalHint(sig syscall.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM (Slurm time limit or scancel?)"
	}
	return interrupt.Name(sig)
}

func tasksToRun(task, n int) ([]int, error) {
	if task >= 0 {
		if task >= n {
			return nil, fmt.Errorf("task %d is out of range: the sweep has %d tasks (0..%d)", task, n, n-1)
		}
		return []int{task}, nil
	}
	env := os.Getenv("SLURM_ARRAY_TASK_ID")
	if env == "" {
		return nil, errors.New("no task: give --task N or run as a Slurm array element ($SLURM_ARRAY_TASK_ID)")
	}
	elem, err := strconv.Atoi(env)
	if err != nil || elem < 0 {
		return nil, fmt.Errorf("SLURM_ARRAY_TASK_ID=%q: want a task index", env)
	}
	k := 1
	if v := os.Getenv("CAVFORGE_TASKS_PER_ELEMENT"); v != "" {
		if k, err = strconv.Atoi(v); err != nil || k < 1 {
			return nil, fmt.Errorf("CAVFORGE_TASKS_PER_ELEMENT=%q: want a positive integer", v)
		}
	}
	first := elem * k
	if first >= n {
		return nil, fmt.Errorf("array element %d runs tasks from %d, out of range: the sweep has %d tasks (0..%d)", elem, first, n, n-1)
	}
	var ts []int
	for i := first; i < min(first+k, n); i++ {
		ts = append(ts, i)
	}
	return ts, nil
}

func sweepStatus(args []string) error {
	var asJSON bool
	s, err := sweepFlags("status", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	sts, err := s.Status()
	if err != nil {
		return err
	}
	n := sweep.Count(sts)
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(struct {
			Sweep  string              `json:"sweep"`
			Dir    string              `json:"dir"`
			Counts map[sweep.State]int `json:"counts"`
			Tasks  []sweep.TaskStatus  `json:"tasks"`
		}{s.File, s.Dir, n, sts})
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "task\tstate\tseconds\toverrides\tdetail")
	for _, st := range sts {
		secs := "-"
		if st.State == sweep.Done {
			secs = fmt.Sprintf("%.1f", st.Seconds)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", st.Task, st.State, secs, strings.Join(st.Overrides, " "), st.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Printf("%d tasks: %d done, %d failed, %d running, %d missing (%s)\n",
		len(sts), n[sweep.Done], n[sweep.Failed], n[sweep.Running], n[sweep.Missing], s.Dir)
	return nil
}

func sweepCollect(args []string) error {
	s, err := sweepFlags("collect", args, nil)
	if err != nil {
		return err
	}
	c, err := s.Collect()
	if err != nil {
		return err
	}
	files, err := c.Write(s.Dir)
	if err != nil {
		return err
	}
	if err := c.WriteTable(os.Stdout); err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(os.Stderr, "wrote %s\n", f)
	}
	return nil
}
