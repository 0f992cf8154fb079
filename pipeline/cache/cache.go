// Package cache is a content-addressed on-disk store of float32 tensors that
// concurrent runs (Slurm array tasks, say) can share: entries are written to a
// temp file and renamed into place, so a reader sees a whole entry or none, and
// every entry carries a checksum, so a damaged one is recomputed, not used.
package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/cavforge/cavforge/pipeline/interrupt"
)

// Key derives an entry's key from everything that determines its value. Parts
// are length-prefixed, so ("ab", "c") and ("a", "bc") differ.
func Key(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Cache stores entries under Dir/<first two key characters>/<key>.f32.
// Log receives warnings about damaged entries; nil means logrus's standard
// logger.
type Cache struct {
	Dir string
	Log *logrus.Logger
}

func (c Cache) log() *logrus.Logger {
	if c.Log == nil {
		return logrus.StandardLogger()
	}
	return c.Log
}

func (c Cache) path(key string) (string, error) {
	if c.Dir == "" {
		return "", errors.New("cache: no directory set")
	}
	if len(key) < 4 || len(key) > maxKeyLen {
		return "", fmt.Errorf("cache: bad key %q: want 4 to %d lowercase hex digits", key, maxKeyLen)
	}
	for _, r := range key {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return "", fmt.Errorf("cache: bad key %q: want lowercase hex digits", key)
		}
	}
	return filepath.Join(c.Dir, key[:2], key+".f32"), nil
}

// Has reports whether an entry for key exists, without reading or checking it.
func (c Cache) Has(key string) bool {
	p, err := c.path(key)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Get returns the entry for key. A missing entry is ok=false with no error;
// so is a damaged one, which is logged, removed and left to be recomputed.
// Before each value is looked up, and then computed, is a safe point to stop
// at: once the process is interrupted, Get returns the interruption.
func (c Cache) Get(key string) (shape []int64, data []float32, ok bool, err error) {
	p, err := c.path(key)
	if err != nil {
		return nil, nil, false, err
	}
	if err := interrupt.Err(); err != nil {
		return nil, nil, false, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, false, fmt.Errorf("cache: %w", err)
	}
	buf := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, nil, false, fmt.Errorf("cache: read %s: %w", p, err)
	}
	shape, data, err = decode(buf, key)
	if err != nil {
		c.log().WithField("file", p).Warnf("cache: damaged entry %s (%v); removing it and recomputing", p, err)
		// Remove only the file we read: another process may have renamed a
		// good entry into place since.
		if now, serr := os.Stat(p); serr == nil && os.SameFile(fi, now) {
			os.Remove(p)
		}
		return nil, nil, false, nil
	}
	return shape, data, true, nil
}

// Put stores data (row-major, len = product of shape) under key, replacing
// any entry there.
func (c Cache) Put(key string, shape []int64, data []float32) error {
	p, err := c.path(key)
	if err != nil {
		return err
	}
	buf, err := encode(key, shape, data)
	if err != nil {
		return fmt.Errorf("cache: put %s: %w", key, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if err := writeFileAtomic(p, buf); err != nil {
		return fmt.Errorf("cache: write %s: %w", p, err)
	}
	return nil
}

// GetOrCompute returns the entry for key, computing and storing it on a miss.
func (c Cache) GetOrCompute(key string, compute func() ([]int64, []float32, error)) ([]int64, []float32, error) {
	shape, data, ok, err := c.Get(key)
	if err != nil || ok {
		return shape, data, err
	}
	shape, data, err = compute()
	if err != nil {
		return nil, nil, err
	}
	if err := c.Put(key, shape, data); err != nil {
		return nil, nil, err
	}
	return shape, data, nil
}

// Entry layout, little-endian:
//
//	magic    [8]byte "CAVFT32\n"
//	version  uint32  (1)
//	ndim     uint32
//	dims     [ndim]int64
//	keylen   uint32
//	key      [keylen]byte
//	checksum [32]byte sha256 of every byte before it and of the payload
//	payload  [prod(dims)]float32
//
// The key is stored so that a file copied or renamed to another key's name is
// caught, and the checksum covers the header so a damaged shape is too.
const (
	magic     = "CAVFT32\n"
	version   = 1
	maxDims   = 32
	maxKeyLen = 256
)

func numel(shape []int64) (int64, error) {
	if len(shape) > maxDims {
		return 0, fmt.Errorf("%d dimensions, at most %d", len(shape), maxDims)
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > math.MaxInt64/4/d {
			return 0, fmt.Errorf("shape %v too large", shape)
		}
		n *= d
	}
	return n, nil
}

func encode(key string, shape []int64, data []float32) ([]byte, error) {
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	if n != int64(len(data)) {
		return nil, fmt.Errorf("shape %v holds %d values, got %d", shape, n, len(data))
	}
	hdr := 8 + 4 + 4 + 8*len(shape) + 4 + len(key)
	buf := make([]byte, hdr+sha256.Size+4*len(data))
	w := buf[:0]
	w = append(w, magic...)
	w = binary.LittleEndian.AppendUint32(w, version)
	w = binary.LittleEndian.AppendUint32(w, uint32(len(shape)))
	for _, d := range shape {
		w = binary.LittleEndian.AppendUint64(w, uint64(d))
	}
	w = binary.LittleEndian.AppendUint32(w, uint32(len(key)))
	w = append(w, key...)
	payload := buf[hdr+sha256.Size:]
	for i, v := range data {
		binary.LittleEndian.PutUint32(payload[4*i:], math.Float32bits(v))
	}
	h := sha256.New()
	h.Write(buf[:hdr])
	h.Write(payload)
	h.Sum(buf[hdr:hdr])
	return buf, nil
}

func decode(buf []byte, key string) ([]int64, []float32, error) {
	r := reader{b: buf}
	m := r.next(len(magic))
	if r.short {
		return nil, nil, errors.New("truncated header")
	}
	if string(m) != magic {
		return nil, nil, errors.New("not a cache entry")
	}
	if v := r.u32(); v != version {
		return nil, nil, fmt.Errorf("format version %d, want %d", v, version)
	}
	ndim := r.u32()
	if ndim > maxDims {
		return nil, nil, fmt.Errorf("%d dimensions", ndim)
	}
	shape := make([]int64, ndim)
	for i := range shape {
		shape[i] = int64(r.u64())
	}
	kl := r.u32()
	if kl > maxKeyLen {
		return nil, nil, fmt.Errorf("key length %d", kl)
	}
	k := r.next(int(kl))
	hdr := r.off
	sum := r.next(sha256.Size)
	if r.short {
		return nil, nil, errors.New("truncated header")
	}
	n, err := numel(shape)
	if err != nil {
		return nil, nil, err
	}
	payload := buf[r.off:]
	if int64(len(payload)) != 4*n {
		return nil, nil, fmt.Errorf("payload is %d bytes, shape %v needs %d (truncated?)", len(payload), shape, 4*n)
	}
	h := sha256.New()
	h.Write(buf[:hdr])
	h.Write(payload)
	if !bytes.Equal(h.Sum(nil), sum) {
		return nil, nil, errors.New("checksum mismatch")
	}
	if string(k) != key {
		return nil, nil, fmt.Errorf("entry is for key %q", k)
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(payload[4*i:]))
	}
	return shape, data, nil
}

// reader reads a header without bounds panics: once short, every read
// returns zeros.
type reader struct {
	b     []byte
	off   int
	short bool
}

func (r *reader) next(n int) []byte {
	if r.short || n > len(r.b)-r.off {
		r.short = true
		return make([]byte, n)
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }
