package atomicfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cavforge/cavforge/pipeline/interrupt"
)

// Temp files and partial directories are named
//
//	.<base>.tmp-<pid>.<host>-<random>
//	.<base>.partial-<pid>.<host>-<random>
//
// with <host> the first 8 hex digits of the SHA-256 of the host name, so
// that a later process can tell a leftover whose owner is gone (kill -9,
// a node that lost power) from the work in progress of a live one, on this
// host or, in a shared directory, on another.
const (
	tempKind    = "tmp"
	partialKind = "partial"
)

var owner = func() string {
	host, _ := os.Hostname()
	h := sha256.Sum256([]byte(host))
	return strconv.Itoa(os.Getpid()) + "." + hex.EncodeToString(h[:4])
}()

// PartialPrefix is how the names of base's partial directories begin.
func PartialPrefix(base string) string { return "." + base + "." + partialKind + "-" }

// CreateTemp creates a temp file for base in dir, tracked for removal if the
// process is interrupted: Keep the Undo once the file is renamed into place.
func CreateTemp(dir, base string) (*os.File, *interrupt.Undo, error) {
	var f *os.File
	u, err := interrupt.Track(func() (func(), error) {
		var err error
		f, err = os.CreateTemp(dir, "."+base+"."+tempKind+"-"+owner+"-*")
		if err != nil {
			return nil, err
		}
		name := f.Name()
		return func() { os.Remove(name) }, nil
	})
	return f, u, err
}

// MkdirTemp creates a partial directory for base in dir (private, as
// os.MkdirTemp makes it), tracked for removal if the process is interrupted.
func MkdirTemp(dir, base string) (string, *interrupt.Undo, error) {
	var path string
	u, err := interrupt.Track(func() (func(), error) {
		var err error
		path, err = os.MkdirTemp(dir, PartialPrefix(base)+owner+"-*")
		if err != nil {
			return nil, err
		}
		p := path
		return func() { os.RemoveAll(p) }, nil
	})
	return path, u, err
}

// Leftover reports whether name (a base name) is a temp file or partial
// directory made by this package in a process of this host that is gone,
// and that process's pid.
func Leftover(name string) (pid int, ok bool) {
	if !strings.HasPrefix(name, ".") {
		return 0, false
	}
	var rest string
	for _, kind := range []string{tempKind, partialKind} {
		if i := strings.LastIndex(name, "."+kind+"-"); i > 0 {
			rest = name[i+len(kind)+2:]
			break
		}
	}
	who, _, found := strings.Cut(rest, "-")
	if !found {
		return 0, false
	}
	p, host, found := strings.Cut(who, ".")
	_, myHost, _ := strings.Cut(owner, ".")
	pid, err := strconv.Atoi(p)
	if !found || err != nil || pid <= 0 || host != myHost {
		return 0, false
	}
	return pid, !alive(pid)
}

// alive is false only when no process has that pid: a pid that exists but
// belongs to someone else (EPERM) may be the owner.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || !errors.Is(err, syscall.ESRCH)
}

// RemoveLeftovers removes dir's leftovers (see Leftover) and returns what it
// removed. A dir that does not exist has none.
func RemoveLeftovers(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if _, ok := Leftover(e.Name()); !ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}
