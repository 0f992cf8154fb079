package cache

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/cavforge/cavforge/pipeline/atomicfile"
)

// testHookBeforeRename, when set by a test, runs after the temp file is
// complete and before it is renamed into place.
var testHookBeforeRename func()

// PauseBeforeRename is a hook for crash tests in other packages: the n-th
// entry this process writes from now on (n >= 1) calls pause once its temp
// file is complete and before the rename, so that a test can kill the
// writer there and know the kill landed mid-write.
func PauseBeforeRename(n int, pause func()) {
	var mu sync.Mutex
	count := 0
	testHookBeforeRename = func() {
		mu.Lock()
		count++
		hit := count == n
		mu.Unlock()
		if hit {
			pause()
		}
	}
}

// writeFileAtomic writes data to a hidden temp file in path's directory and
// renames it over path. A killed process leaves either the previous entry or
// the new one, plus perhaps a temp file that Get never opens and that
// RemoveLeftovers removes once its owner is gone; an interrupted one removes
// its temp file itself. There is no fsync: entries are hundreds of megabytes
// per run, and one that a power loss damages fails its checksum and is
// recomputed.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	f, undo, err := atomicfile.CreateTemp(dir, base)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			undo.Now()
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if testHookBeforeRename != nil {
		testHookBeforeRename()
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	undo.Keep()
	return nil
}

// RemoveLeftovers removes the temp files that processes which are gone left
// in the cache (killed while writing an entry) and returns their paths.
func (c Cache) RemoveLeftovers() ([]string, error) {
	if c.Dir == "" {
		return nil, nil
	}
	subs, err := filepath.Glob(filepath.Join(c.Dir, "??"))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, d := range subs {
		r, err := atomicfile.RemoveLeftovers(d)
		removed = append(removed, r...)
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}
