package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/pipeline/model"
)

func runLayers(args []string) error {
	fs := flag.NewFlagSet("layers", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	input := fs.String("input", "3,224,224", "input shape C,H,W")
	device := fs.String("device", "cpu", "auto|cpu|cuda|cuda:N")
	asJSON := fs.Bool("json", false, "print JSON")
	path, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if path == "" && fs.NArg() > 0 {
		path = fs.Arg(0)
	}
	if path == "" {
		return fmt.Errorf("usage: cavforge layers MODEL.pt [--input C,H,W] [--device D] [--json]")
	}
	chw, err := parseShape(*input)
	if err != nil {
		return fmt.Errorf("--input %q: %w", *input, err)
	}
	out, layers, err := model.Layers(path, *device, chw)
	if err != nil {
		return err
	}
	if *asJSON {
		// One layer a line: easy to read and to grep.
		fmt.Println("[")
		for i, l := range layers {
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			sep := ","
			if i == len(layers)-1 {
				sep = ""
			}
			fmt.Printf("  %s%s\n", b, sep)
		}
		fmt.Println("]")
		return nil
	}
	width := len("path")
	for _, l := range layers {
		width = max(width, len(l.Path))
	}
	fmt.Printf("%-*s  %s\n", width, "path", "output shape")
	for _, l := range layers {
		fmt.Printf("%-*s  %v\n", width, l.Path, l.Shape)
	}
	fmt.Printf("%-*s  %v\n", width, "(output)", out)
	return nil
}

// splitPositional lets the model path come before or after the flags.
func splitPositional(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

func parseShape(s string) ([]int64, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return nil, fmt.Errorf("want C,H,W")
	}
	shape := make([]int64, 3)
	for i, p := range parts {
		v, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("want three positive integers C,H,W")
		}
		shape[i] = v
	}
	return shape, nil
}
