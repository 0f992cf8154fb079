// Package images finds, chooses, decodes and writes the image sets that every
// stage consumes: a set is a folder root/<set>/ of PNG and JPEG files.
package images

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
)

// Listing is what a set folder holds, sorted by name within each list.
type Listing struct {
	Files []string // PNG and JPEG files
	// Broken are entries named like PNG or JPEG files that are no readable
	// file: a dangling symlink, a link to a folder, a device.
	Broken []string
	// Unsupported are image files in formats cavforge does not decode.
	Unsupported []string
}

// List reads root/<set>. Hidden files are skipped: macOS leaves
// "._name.png" resource forks next to real images, and those are not images.
func List(root, set string) (Listing, error) {
	dir := filepath.Join(root, set)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Listing{}, fmt.Errorf("data.root/%s: no such folder %s", set, dir)
	case err != nil:
		return Listing{}, fmt.Errorf("data.root/%s: %w", set, err)
	case !fi.IsDir():
		return Listing{}, fmt.Errorf("data.root/%s: %s is not a folder", set, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Listing{}, fmt.Errorf("data.root/%s: %w", set, err)
	}
	var l Listing
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		if isUnsupportedImageName(name) {
			l.Unsupported = append(l.Unsupported, p)
			continue
		}
		if !isImageName(name) || e.IsDir() {
			continue
		}
		regular := e.Type().IsRegular()
		if e.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(p)
			regular = err == nil && fi.Mode().IsRegular()
		}
		if regular {
			l.Files = append(l.Files, p)
		} else {
			l.Broken = append(l.Broken, p)
		}
	}
	return l, nil
}

// ListSet returns the PNG and JPEG files of root/<set>, sorted by name. A
// broken entry is an error naming it, or with skipBad a warning; files in
// formats cavforge does not decode get one warning with their count. A nil
// log means logrus's standard logger.
func ListSet(root, set string, skipBad bool, log *logrus.Logger) ([]string, error) {
	if log == nil {
		log = logrus.StandardLogger()
	}
	l, err := List(root, set)
	if err != nil {
		return nil, err
	}
	if len(l.Broken) > 0 {
		if !skipBad {
			return nil, fmt.Errorf("%s: %s (data.skip_bad_images: true skips it)", l.Broken[0], brokenReason(l.Broken[0]))
		}
		for _, p := range l.Broken {
			log.WithField("file", p).Warnf("skipping %s", brokenReason(p))
		}
	}
	if n := len(l.Unsupported); n > 0 {
		log.WithField("set", set).Warnf("%d files in formats cavforge does not decode are not used (first: %s); convert them to PNG or JPEG",
			n, filepath.Base(l.Unsupported[0]))
	}
	if len(l.Files) == 0 {
		return nil, fmt.Errorf("%s: no images (.png, .jpg, .jpeg)", filepath.Join(root, set))
	}
	return l.Files, nil
}

func brokenReason(p string) string {
	if target, err := os.Readlink(p); err == nil {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("dangling symlink to %s", target)
		}
		return fmt.Sprintf("symlink to %s, which is not a file", target)
	}
	return "not a regular file"
}

func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

func isUnsupportedImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif":
		return true
	}
	return false
}

// Choose returns max files picked by a shuffle seeded from (seed, set), in
// sorted order, or all of them when max <= 0 or there are no more than max.
// The set name is part of the seed so that sets of equal size do not get the
// same positions picked.
func Choose(files []string, max int, seed int64, set string) []string {
	out := slices.Clone(files)
	if max > 0 && len(out) > max {
		h := sha256.New()
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(seed))
		h.Write(b[:])
		h.Write([]byte(set))
		sum := h.Sum(nil)
		r := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[0:8]), binary.LittleEndian.Uint64(sum[8:16])))
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		out = out[:max]
	}
	slices.Sort(out)
	return out
}

// Disjoint cuts count disjoint sets of per files from the pool's files,
// shuffled by a seed from (seed, pool); each set is in sorted order. The
// caller checks that the pool has count·per files.
func Disjoint(files []string, count, per int, seed int64, pool string) [][]string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d\x00random.from\x00%s", seed, pool)))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[0:8]), binary.LittleEndian.Uint64(h[8:16])))
	files = slices.Clone(files)
	rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	out := make([][]string, count)
	for i := range out {
		out[i] = slices.Clone(files[i*per : (i+1)*per])
		slices.Sort(out[i])
	}
	return out
}

// ListHash identifies an image list by content: sha256 over each file's name
// relative to root (slash-separated) and the sha256 of its bytes, in the given
// order, since activation rows follow that order. Moving the data root keeps
// the hash; renaming, reordering or editing any file changes it.
func ListHash(root string, paths []string) (string, error) {
	h := sha256.New()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(paths)))
	h.Write(n[:])
	for _, p := range paths {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", p, err)
		}
		rel = filepath.ToSlash(rel)
		sum, err := fileSHA256(p)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", p, withoutPath(err))
		}
		binary.LittleEndian.PutUint64(n[:], uint64(len(rel)))
		h.Write(n[:])
		h.Write([]byte(rel))
		h.Write(sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 is the hex SHA-256 of a file's bytes.
func FileSHA256(path string) (string, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// withoutPath drops the path from an *fs.PathError so that messages which
// already name the file do not name it twice.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
