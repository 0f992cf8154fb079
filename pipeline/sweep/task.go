package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/report"
	"github.com/cavforge/cavforge/pipeline/run"
)

// A task's files in <dir>/tasks/, next to its run directory N:
//
//	.N.lock        held (flock) by the process running the task
//	.N.partial-*   run.Run's unfinished run directory
//	N.failed       why the last attempt failed (JSON, see Failure)
const (
	lockSuffix    = ".lock"
	failedSuffix  = ".failed"
	lockRetryTime = 2 * time.Second // Status holds a task's lock for microseconds
)

// ErrRunning is returned by RunTask for a task that another process runs.
var ErrRunning = errors.New("already running")

// Failure is the content of a task's N.failed marker.
type Failure struct {
	Task  int       `json:"task"`
	Error string    `json:"error"`
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Job   string    `json:"slurm_job,omitempty"`
	Time  time.Time `json:"time"`
}

// RunTask runs task i into TaskDir(i) with run.Run, with extra overrides
// after the task's own (device=cpu, say), unless the task is done already:
// then it returns the directory and skipped=true. While it runs it holds the
// task's lock, so two processes never run one task; a failure leaves an
// N.failed marker that Status reports, and a success removes it. opts.Out is
// ignored.
func (s *Sweep) RunTask(i int, opts run.Options, extra ...string) (dir string, skipped bool, err error) {
	t, err := s.Task(i)
	if err != nil {
		return "", false, err
	}
	if err := s.checkPlan(); err != nil {
		return "", false, err
	}
	if err := s.writePlan(); err != nil { // a sweep run without `plan` first
		return "", false, err
	}
	l, err := s.lock(i)
	if err != nil {
		return "", false, err
	}
	defer l.unlock()
	dir = s.TaskDir(i)
	if done(dir) {
		return dir, true, nil
	}
	log := opts.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	if err := s.clean(i, log); err != nil {
		return "", false, err
	}
	cfg, err := s.Config(i, extra...)
	if err == nil {
		opts.Out = dir
		opts.Overrides = append(slices.Clone(t.Overrides), extra...)
		log.WithFields(logrus.Fields{"task": i, "overrides": t.text()}).Info("sweep task start")
		_, err = run.Run(cfg, opts)
	}
	if err != nil {
		err = fmt.Errorf("task %d (%s): %w", i, t.text(), err)
		if merr := s.MarkFailed(i, err); merr != nil {
			log.Warnf("cannot record the failure of task %d: %v", i, merr)
		}
		return "", false, err
	}
	if err := os.Remove(s.failedPath(i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warnf("task %d: %v", i, err)
	}
	return dir, false, nil
}

// MarkFailed records why task i failed, for Status.
func (s *Sweep) MarkFailed(i int, cause error) error {
	host, _ := os.Hostname()
	f := Failure{Task: i, Error: oneLine(cause.Error()), Host: host, PID: os.Getpid(), Job: slurmJob(), Time: time.Now().UTC()}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.failedPath(i), append(b, '\n'))
}

// clean removes what an interrupted attempt left: run.Run's partial
// directories and a run directory without results (its results.json removed
// by hand, say, to run it again). The caller holds the task's lock.
func (s *Sweep) clean(i int, log *logrus.Logger) error {
	partials, err := filepath.Glob(filepath.Join(s.Dir, "tasks", run.PartialPrefix(fmt.Sprint(i))+"*"))
	if err != nil {
		return err
	}
	for _, p := range partials {
		log.Infof("task %d: removing %s, left by an interrupted run", i, p)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	dir := s.TaskDir(i)
	if _, err := os.Stat(dir); err == nil {
		log.Warnf("task %d: %s has no %s; removing it and running the task again", i, dir, report.ResultsFile)
		return os.RemoveAll(dir)
	}
	return nil
}

func done(dir string) bool {
	for _, f := range []string{report.ResultsFile, report.ManifestFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

func (s *Sweep) failedPath(i int) string {
	return filepath.Join(s.Dir, "tasks", fmt.Sprint(i)+failedSuffix)
}

func (s *Sweep) lockPath(i int) string {
	return filepath.Join(s.Dir, "tasks", "."+fmt.Sprint(i)+lockSuffix)
}

// taskLock is an flock on a task's lock file. The kernel drops it when the
// process dies, kill -9 included, so a crashed task never looks like it is
// running; on NFS, Linux maps flock to byte-range locks that every client
// sees.
type taskLock struct{ f *os.File }

func (s *Sweep) lock(i int) (*taskLock, error) {
	if err := os.MkdirAll(filepath.Join(s.Dir, "tasks"), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.lockPath(i), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockRetryTime)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			holder := readHolder(f)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("task %d is %w (%s)", i, ErrRunning, holder)
			}
			return nil, fmt.Errorf("lock task %d: %w", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("pid %d on %s", os.Getpid(), host)
	if j := slurmJob(); j != "" {
		holder += ", Slurm job " + j
	}
	holder += ", since " + time.Now().UTC().Format(time.RFC3339)
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(holder+"\n"), 0)
	}
	return &taskLock{f}, nil
}

func (l *taskLock) unlock() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// running reports whether a process holds task i's lock, and who.
func (s *Sweep) running(i int) (bool, string) {
	f, err := os.Open(s.lockPath(i))
	if err != nil {
		return false, ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK), readHolder(f)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, ""
}

func readHolder(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	if h := strings.TrimSpace(string(b[:n])); h != "" {
		return h
	}
	return "holder unknown"
}

func slurmJob() string {
	job, task := os.Getenv("SLURM_ARRAY_JOB_ID"), os.Getenv("SLURM_ARRAY_TASK_ID")
	if job != "" && task != "" {
		return job + "_" + task
	}
	return os.Getenv("SLURM_JOB_ID")
}
