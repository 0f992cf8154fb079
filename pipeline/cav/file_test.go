package cav

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const python = "/usr/bin/python3"

func needNumpy(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		t.Skipf("%s with numpy is needed: %v", python, err)
	}
}

// numpy.load reads what WriteNPY writes: dtype float32, the shape, the
// values in C order (exactly), for shapes whose headers pad differently.
func TestNumpyLoadsWriteNPY(t *testing.T) {
	needNumpy(t)
	for _, shape := range [][]int64{{5}, {2, 3, 4}, {64, 8, 8}, {1, 1}} {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i)*0.37 - 1.0/3
		}
		path := filepath.Join(t.TempDir(), "v.npy")
		if err := WriteNPY(path, shape, data); err != nil {
			t.Fatal(err)
		}
		// Prints dtype, shape, and each value's float32 bits in C order.
		out, err := exec.Command(python, "-c", `import sys, numpy
a = numpy.load(sys.argv[1])
print(a.dtype, list(a.shape), a.flags['C_CONTIGUOUS'])
print(" ".join(str(int(x)) for x in a.ravel(order='C').view(numpy.uint32)))`, path).CombinedOutput()
		if err != nil {
			t.Fatalf("shape %v: numpy.load: %v\n%s", shape, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dims := make([]string, len(shape))
		for i, d := range shape {
			dims[i] = itoa(d)
		}
		if want := "float32 [" + strings.Join(dims, ", ") + "] True"; lines[0] != want {
			t.Errorf("numpy sees %q, want %q", lines[0], want)
		}
		bits := strings.Fields(lines[1])
		for i, v := range data {
			if bits[i] != itoa(int64(math.Float32bits(v))) {
				t.Fatalf("shape %v: value %d is %s in numpy, %v written", shape, i, bits[i], v)
			}
		}
		gotShape, got, err := ReadNPY(path)
		if err != nil || !slices.Equal(gotShape, shape) || !slices.Equal(got, data) {
			t.Errorf("ReadNPY: %v %v, %v", gotShape, err, len(got))
		}
	}
}

// ReadNPY reads numpy.save's float32 arrays and refuses other dtypes with
// a line that names the file.
func TestReadNPYReadsNumpySaveAndRefusesFloat64(t *testing.T) {
	needNumpy(t)
	dir := t.TempDir()
	f32, f64 := filepath.Join(dir, "a.npy"), filepath.Join(dir, "b.npy")
	if out, err := exec.Command(python, "-c", `import sys, numpy
numpy.save(sys.argv[1], numpy.arange(24, dtype=numpy.float32).reshape(2, 3, 4) / 7)
numpy.save(sys.argv[2], numpy.arange(3, dtype=numpy.float64))`, f32, f64).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	shape, data, err := ReadNPY(f32)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, []int64{2, 3, 4}) || len(data) != 24 || data[23] != float32(23)/7 {
		t.Errorf("shape %v, %d values, last %v", shape, len(data), data[len(data)-1])
	}
	if _, _, err := ReadNPY(f64); err == nil || !strings.Contains(err.Error(), f64) {
		t.Errorf("float64 array: %v, want an error naming %s", err, f64)
	}
	if err := os.WriteFile(f64, []byte("\x93NUMPY\x01\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadNPY(f64); err == nil {
		t.Error("truncated file read")
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
