package model

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/cavforge/cavforge/cgo/torch"
)

// testDevice is cpu unless CAVFORGE_DEVICE names another (the GPU check
// script sets cuda).
func testDevice() string {
	if d := os.Getenv("CAVFORGE_DEVICE"); d != "" {
		return d
	}
	return "cpu"
}

func residentBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// 10,000 forward + capture + gradient passes: resident memory (and device
// memory on CUDA) stays flat after warm-up, and every tensor is freed.
func TestMemoryFlatOver10000Passes(t *testing.T) {
	// CUDA libraries keep per-thread state (cuBLAS handles and workspaces);
	// the CLI's main goroutine is locked to its thread, and so is this test.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := Load(filepath.Join("..", "..", "testdata", "demo", "model.pt"), testDevice(), Input{Size: [2]int{16, 16}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	host := make([]float32, 2*3*16*16)
	for i := range host {
		host[i] = float32(i%17) / 17
	}
	base := torch.LiveTensors()
	pass := func() {
		s := torch.NewScope()
		defer s.Close()
		x := s.FromFloat32(host, []int64{2, 3, 16, 16}, m.Device())
		g, _ := m.ClassGradients(s, x, "block2", 0, torch.FP32)
		if _, err := g.Float32s(); err != nil {
			t.Fatal(err)
		}
	}
	const warm, total = 1000, 10000
	var rssWarm int64
	var devWarm torch.DeviceMemory
	for i := 0; i < total; i++ {
		pass()
		if i == warm-1 {
			runtime.GC()
			rssWarm = residentBytes(t)
			devWarm, _ = torch.CUDAMemory(m.Device())
		}
	}
	runtime.GC()
	rssEnd := residentBytes(t)
	devEnd, _ := torch.CUDAMemory(m.Device())
	t.Logf("RSS after %d passes %.1f MiB, after %d %.1f MiB; device allocated %d -> %d bytes",
		warm, float64(rssWarm)/(1<<20), total, float64(rssEnd)/(1<<20), devWarm.Allocated, devEnd.Allocated)
	if live := torch.LiveTensors() - base; live != 0 {
		t.Errorf("%d tensors still alive", live)
	}
	// 9,000 passes that each leaked one 6 KiB input would add 54 MiB.
	if grew := rssEnd - rssWarm; grew > 8<<20 {
		t.Errorf("resident memory grew %.1f MiB over %d passes after warm-up", float64(grew)/(1<<20), total-warm)
	}
	if devEnd.Allocated != devWarm.Allocated {
		t.Errorf("device memory allocated went from %d to %d bytes", devWarm.Allocated, devEnd.Allocated)
	}
}
