package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/cavforge/cavforge/cgo/torch"
)

// Version is cavforge's release; the commit comes from the Go build info.
const Version = "0.1.0"

// commit is set by the Makefile (-ldflags -X main.commit=...), since Go's own
// VCS stamping is often switched off (GOFLAGS=-buildvcs=false).
var commit string

// Commit is the VCS revision the binary was built from ("unknown" outside a
// checkout), with "+dirty" when the tree had changes.
func Commit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

func runVersion(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments")
	}
	fmt.Printf("cavforge %s (commit %s)\n", Version, Commit())
	fmt.Printf("go       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("libtorch %s, %d CPU threads\n", torch.Version(), torch.NumThreads())
	if !torch.CUDAAvailable() {
		fmt.Println("cuda     not available (runs on the CPU)")
		return nil
	}
	names, err := torch.CUDADevices()
	if err != nil {
		return err
	}
	fmt.Printf("cuda     available, %d device(s)\n", len(names))
	for i, n := range names {
		fmt.Printf("  cuda:%d %s\n", i, n)
	}
	return nil
}
