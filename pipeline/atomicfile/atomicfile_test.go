package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	for _, content := range []string{"first", "second, longer content", ""} {
		if err := Write(path, []byte(content)); err != nil {
			t.Fatalf("Write(%q): %v", content, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("content = %q, want %q", got, content)
		}
		if names := dirNames(t, dir); len(names) != 1 || names[0] != "results.json" {
			t.Errorf("directory holds %v, want only results.json", names)
		}
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != Mode {
		t.Errorf("mode = %v, want %v", info.Mode().Perm(), Mode)
	}
}

func TestWriteWithLargeContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.bin")
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, past bufio's buffer
	err := WriteWith(path, func(w io.Writer) error {
		for i := 0; i < len(want); i += 1000 {
			if _, err := w.Write(want[i:min(i+1000, len(want))]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("read back %d bytes, want %d identical bytes", len(got), len(want))
	}
}

func TestWriteWithFailingWriter(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		existing string // "" means no file before the write
	}{
		{"new file", ""},
		{"existing file kept", "old content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.csv")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteWith(path, func(w io.Writer) error {
				// More than bufio's buffer, so part of it reaches the temp file.
				w.Write(bytes.Repeat([]byte("x"), 10000))
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want it to wrap %v", err, boom)
			}
			names := dirNames(t, dir)
			if tt.existing == "" {
				if len(names) != 0 {
					t.Errorf("directory holds %v, want nothing", names)
				}
				return
			}
			if len(names) != 1 || names[0] != "out.csv" {
				t.Errorf("directory holds %v, want only out.csv", names)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.existing {
				t.Errorf("content = %q, want the old %q", got, tt.existing)
			}
		})
	}
}

func TestWriteWithPanic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.png")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic did not propagate")
			}
		}()
		WriteWith(path, func(w io.Writer) error {
			w.Write([]byte("partial"))
			panic("encoder bug")
		})
	}()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("directory holds %v after a panic, want nothing", names)
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "f")
	if err := Write(path, []byte("x")); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}

func TestWriteRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := Write("plain", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "plain")); err != nil || string(got) != "x" {
		t.Errorf("read back %q, %v", got, err)
	}
}
