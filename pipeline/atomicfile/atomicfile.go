// Package atomicfile writes files so that readers see either the old content
// or the complete new content, never a partial file: a killed run leaves no
// half-written result or cache entry, and concurrent tasks that share a
// directory never read each other's unfinished writes.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Mode is the permission of files written by this package. Temp files are
// created 0600; they are widened before the rename so the result is readable
// by the other tasks of a sweep that share the directory.
const Mode os.FileMode = 0o644

// Write atomically replaces path with data.
func Write(path string, data []byte) error {
	return WriteWith(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteWith atomically replaces path with what fill writes. The content goes
// to a temp file in the same directory (so the rename cannot cross file
// systems), which is synced, renamed over path, and then the directory is
// synced so the rename itself survives a crash. If fill returns an error or
// panics, path is left untouched and the temp file is removed; so it is if
// the process is interrupted (see package interrupt) before the rename.
func WriteWith(path string, fill func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, undo, err := CreateTemp(dir, base)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			undo.Now()
		}
	}()

	bw := bufio.NewWriter(f)
	if err := fill(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(Mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	committed = true
	undo.Keep()
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable. File systems that cannot sync a
// directory (some network and FUSE mounts) say so with EINVAL or ENOTSUP;
// there the rename is as durable as it gets, so that is not an error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}
