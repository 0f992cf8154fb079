package cache

import (
	"os"
	"path/filepath"
)

// testHookBeforeRename, when set by a test, runs after the temp file is
// complete and before it is renamed into place.
var testHookBeforeRename func()

// writeFileAtomic writes data to a hidden temp file in path's directory and
// renames it over path. A killed process leaves either the previous entry or
// the new one, plus perhaps a stray temp file that Get never opens. There is
// no fsync: entries are hundreds of megabytes per run, and one that a power
// loss damages fails its checksum and is recomputed.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
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
	return os.Rename(f.Name(), path)
}
