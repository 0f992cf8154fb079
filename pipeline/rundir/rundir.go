// Package rundir writes a run directory all or nothing: it is built in a
// private sibling temporary directory, the run's log is copied into it, and
// Publish renames it into place. Nothing is left at the final path, nor any
// parent folder it made, unless the run is published.
package rundir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
	"github.com/cavforge/cavforge/pipeline/interrupt"
)

// LogFile is the run's log, one JSON object a line.
const LogFile = "log.jsonl"

// ID names a run directory: the start time to the millisecond (so that ids
// sort by time), the config hash, and a random part, so that runs of one
// config started together, in a job array say, never collide.
func ID(start time.Time, cfgHash string) string {
	var r [4]byte
	rand.Read(r[:])
	return start.UTC().Format("20060102-150405.000") + "-" + cfgHash[:8] + "-" + hex.EncodeToString(r[:])
}

// PartialPrefix is how the temporary directory of an unfinished run at out
// begins (it sits beside out); a leftover one is an interrupted run.
func PartialPrefix(out string) string { return atomicfile.PartialPrefix(filepath.Base(out)) }

// Dir is a run directory being written.
type Dir struct {
	Out string // where Publish puts it
	Tmp string // where it is written meanwhile
	// parents are the folders above Out it made; partial is Tmp.
	parents, partial *interrupt.Undo
	log              *logrus.Logger
	hook             *fileHook
}

// Create checks out (see Check), makes its missing parents, removes (with a
// warning on log) the partial directories that killed runs left beside it,
// and makes the temporary directory. finished names the file only a
// finished run holds, for Check's message.
func Create(out, finished string, log *logrus.Logger) (d *Dir, err error) {
	if err := Check(out, finished); err != nil {
		return nil, err
	}
	d = &Dir{Out: out, log: log}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.parents, err = interrupt.Track(func() (func(), error) { return mkdirAll(filepath.Dir(out)) }); err != nil {
		return nil, err
	}
	removeLeftovers(filepath.Dir(out), log)
	d.Tmp, d.partial, err = atomicfile.MkdirTemp(filepath.Dir(out), filepath.Base(out))
	for i := 0; i < 3 && errors.Is(err, fs.ErrNotExist); i++ {
		// A failed run of the same name removed runs/<name>/ while it was
		// empty, between the two calls: make it again.
		if err = os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
			d.Tmp, d.partial, err = atomicfile.MkdirTemp(filepath.Dir(out), filepath.Base(out))
		}
	}
	if err != nil {
		return nil, err
	}
	// MkdirTemp makes it private; a run directory is for the whole group.
	if err := os.Chmod(d.Tmp, 0o755); err != nil {
		return nil, err
	}
	return d, nil
}

// CopyLog copies log's entries from now on to the directory's log.jsonl,
// until Close.
func (d *Dir) CopyLog() error {
	f, err := os.Create(filepath.Join(d.Tmp, LogFile))
	if err != nil {
		return err
	}
	d.hook = &fileHook{f: f, format: &logrus.JSONFormatter{}}
	d.log.AddHook(d.hook)
	return nil
}

// Publish renames the temporary directory to Out. rename(2) of a directory
// replaces an empty folder only; never a file, a link or a folder that
// another process filled meanwhile (os.Rename refuses every existing folder).
func (d *Dir) Publish() error {
	if err := syscall.Rename(d.Tmp, d.Out); err != nil {
		return fmt.Errorf("run directory %s: %w (it was created while the run went on; the run's results are discarded)", d.Out, err)
	}
	d.partial.Keep()
	d.parents.Keep()
	return nil
}

// Close stops copying the log and, unless the directory was published,
// removes the temporary directory and the parents Create made (those still
// empty). It is safe on a Dir that Create left half made.
func (d *Dir) Close() {
	if d.hook != nil {
		removeHook(d.log, d.hook)
		d.hook.f.Close()
	}
	if d.partial != nil {
		d.partial.Now()
	}
	if d.parents != nil {
		d.parents.Now()
	}
}

// Check refuses a run directory that holds anything already: the user's
// file or link, or a folder with anything in it, a finished run (one that
// holds finished) included.
func Check(out, finished string) error {
	fi, err := os.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("run directory %s: %w", out, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("run directory %s is a symbolic link; give a new or empty folder (nothing was changed)", out)
	case !fi.IsDir():
		return fmt.Errorf("run directory %s is an existing file; give a new or empty folder (nothing was changed)", out)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("run directory %s: %w", out, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(out, finished)); err == nil {
		return fmt.Errorf("run directory %s holds a finished run; give a new or empty folder (nothing was changed)", out)
	}
	return fmt.Errorf("run directory %s exists and is not empty; give a new or empty folder (nothing was changed)", out)
}

// mkdirAll makes dir and its missing parents, and returns how to remove the
// ones it made, deepest first, as long as they are empty (a failed run
// leaves no empty runs/<name>/ behind; one that another run filled stays).
func mkdirAll(dir string) (undo func(), err error) {
	var made []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return func() {
		for _, d := range made {
			if syscall.Rmdir(d) != nil {
				return
			}
		}
	}, nil
}

// removeLeftovers removes the partial directories that killed runs (kill -9,
// a lost node) left in dir, with a warning for each.
func removeLeftovers(dir string, log *logrus.Logger) {
	removed, err := atomicfile.RemoveLeftovers(dir)
	for _, p := range removed {
		log.Warnf("removed %s, left by a run that was killed before it finished", p)
	}
	if err != nil {
		log.Warnf("cannot remove what killed runs left in %s: %v", dir, err)
	}
}

// fileHook copies log entries to the run's log.jsonl.
type fileHook struct {
	f      *os.File
	format logrus.Formatter
}

func (h *fileHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *fileHook) Fire(entry *logrus.Entry) error {
	b, err := h.format.Format(entry)
	if err != nil {
		return err
	}
	_, err = h.f.Write(b)
	return err
}

func removeHook(log *logrus.Logger, hook logrus.Hook) {
	hooks := logrus.LevelHooks{}
	for lvl, hs := range log.Hooks {
		for _, h := range hs {
			if h != hook {
				hooks[lvl] = append(hooks[lvl], h)
			}
		}
	}
	log.ReplaceHooks(hooks)
}
