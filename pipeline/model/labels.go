package model

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Classes names a model's outputs: Labels[i] is output i's name (none when
// no labels file is given), from the file Path.
type Classes struct {
	N      int
	Labels []string
	Path   string
}

// ReadLabels reads a labels file, one name per line.
func ReadLabels(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model.labels: %w", err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		out = append(out, strings.TrimSpace(line))
	}
	if len(out) == 0 || (len(out) == 1 && out[0] == "") {
		return nil, fmt.Errorf("model.labels %s is empty", path)
	}
	return out, nil
}

// Index resolves a target written as a label name or an index.
func (c Classes) Index(target string) (int, error) {
	var found []int
	for i, l := range c.Labels {
		if l == target {
			found = append(found, i)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return 0, fmt.Errorf("target %q names %d classes in the labels file %s (indices %s); give the index instead",
			target, len(found), c.Path, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(found)), ", "), "[]"))
	}
	if i, err := strconv.Atoi(target); err == nil {
		if i < 0 || i >= c.N {
			return 0, fmt.Errorf("target %d is out of range: the model has %d outputs", i, c.N)
		}
		return i, nil
	}
	if c.Labels == nil {
		return 0, fmt.Errorf("target %q is not a class index and model.labels is not set", target)
	}
	return 0, fmt.Errorf("target %q is not in the labels file %s", target, c.Path)
}

// Repeated are the names that stand for more than one class, in order of
// first occurrence (ImageNet's labels have "crane" and "maillot" twice).
func (c Classes) Repeated() []string {
	count := map[string]int{}
	var out []string
	for _, n := range c.Labels {
		if count[n]++; count[n] == 2 && n != "" {
			out = append(out, n)
		}
	}
	return out
}
