// Package sweep expands a grid of config overrides into numbered tasks and
// runs, tracks and collects them (SPEC §6). A task is the base config plus
// its overrides, run into an ordinary run directory <dir>/tasks/<N>; the
// state of a sweep is read from those directories, so that any number of
// processes on any number of nodes (Slurm array elements) can share it.
//
// A sweep file:
//
//	base: zebra-stripes.yaml              # relative to the sweep file
//	grid:                                 # any config key path (as --set takes)
//	  tcav.layers: [[inception3b], [inception4c]]
//	  seed: [0, 1, 2]
//	out: runs/zebra-sweep                 # default runs/<base name>-sweep
//
// Tasks are the cartesian product of the grid, keys in file order, the last
// key varying fastest: above, task 0 is (inception3b, 0), task 1 is
// (inception3b, 1), task 3 is (inception4c, 0).
package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cavforge/cavforge/pipeline/config"
)

// Sweep is a parsed sweep file.
type Sweep struct {
	File string // the sweep file, absolute
	Base string // the base config, absolute
	Dir  string // the sweep directory, absolute
	Grid []Axis // in file order
}

// Axis is one grid key and the values it takes.
type Axis struct {
	Key    string
	Values []Value
}

// Value is one grid value.
type Value struct {
	// Text is the value as flow YAML, the form --set takes: 0.5, [block3],
	// {classifier: logistic}.
	Text string
	// Data is the value decoded (numbers, strings, lists, maps), for JSON.
	Data any
}

// file is a sweep file as written.
type file struct {
	Base string    `yaml:"base"`
	Grid yaml.Node `yaml:"grid"` // kept as written: its order numbers the tasks
	Out  string    `yaml:"out"`
}

// Load reads and checks a sweep file: its keys, that base exists, and that
// every grid key is a config key path with a non-empty list of values.
// Errors are one line and name the file, line and key, as config errors do.
func Load(path string) (*Sweep, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	var f file
	doc, err := config.DecodeFile(path, "sweep file", &f)
	if err != nil {
		return nil, err
	}
	if !doc.Has("base") && !doc.Has("grid") && !doc.Has("out") {
		return nil, fmt.Errorf("%s: empty sweep file: want base, grid and optionally out", path)
	}
	s := &Sweep{File: abs}
	dir := filepath.Dir(abs)
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if f.Base == "" {
		if doc.Has("base") {
			return nil, doc.Errorf("base", "want a file path, got nothing")
		}
		return nil, fmt.Errorf("%s: base is missing: name the config the grid applies to", path)
	}
	s.Base = resolve(f.Base)
	if st, err := os.Stat(s.Base); err != nil || st.IsDir() {
		return nil, doc.Errorf("base", "config %s not found", s.Base)
	}
	grid := &f.Grid
	if config.IsNull(grid) || grid.Kind == yaml.MappingNode && len(grid.Content) == 0 {
		if !doc.Has("grid") {
			return nil, fmt.Errorf("%s: grid is missing: want at least one config key with a list of values", path)
		}
		got := "nothing"
		if grid.Kind == yaml.MappingNode {
			got = "an empty mapping"
		}
		return nil, doc.ErrorAt(grid, "grid", "want at least one config key with a list of values, got %s", got)
	}
	if grid.Kind != yaml.MappingNode {
		return nil, doc.ErrorAt(grid, "grid", "want a mapping of config keys to lists of values, got %s", config.Describe(grid))
	}
	for i := 0; i+1 < len(grid.Content); i += 2 {
		k, v := grid.Content[i], config.Resolve(grid.Content[i+1])
		key := "grid." + k.Value
		for _, a := range s.Grid {
			if a.Key == k.Value {
				return nil, doc.ErrorAt(k, key, "duplicate key %q", k.Value)
			}
		}
		if err := config.CheckKey(k.Value); err != nil {
			return nil, doc.ErrorAt(k, "grid", "%v", err)
		}
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			got := config.Describe(v)
			if v.Kind == yaml.SequenceNode {
				got = "an empty list"
			}
			return nil, doc.ErrorAt(v, key, "want a non-empty list of values, got %s", got)
		}
		a := Axis{Key: k.Value}
		for _, e := range v.Content {
			val, err := newValue(config.Resolve(e))
			if err != nil {
				return nil, doc.ErrorAt(e, key, "%v", err)
			}
			for _, prev := range a.Values {
				if prev.Text == val.Text {
					return nil, doc.ErrorAt(e, key, "value %s appears twice", val.Text)
				}
			}
			a.Values = append(a.Values, val)
		}
		s.Grid = append(s.Grid, a)
	}
	out := f.Out
	if out == "" {
		name := strings.TrimSuffix(filepath.Base(s.Base), filepath.Ext(s.Base))
		out = filepath.Join("runs", name+"-sweep")
	}
	s.Dir = filepath.Clean(resolve(out))
	return s, nil
}

// Keys are the grid keys in file order.
func (s *Sweep) Keys() []string {
	keys := make([]string, len(s.Grid))
	for i, a := range s.Grid {
		keys[i] = a.Key
	}
	return keys
}

// Len is the number of tasks.
func (s *Sweep) Len() int {
	n := 1
	for _, a := range s.Grid {
		n *= len(a.Values)
	}
	return n
}

// Task is one point of the grid.
type Task struct {
	Index int `json:"task"`
	// Overrides are "key=value" in grid order, as config.Load takes them.
	Overrides []string `json:"overrides"`
	// Values are the same values decoded, by key.
	Values map[string]any `json:"values"`
}

// Task returns task i: the last grid key varies fastest.
func (s *Sweep) Task(i int) (Task, error) {
	n := s.Len()
	if i < 0 || i >= n {
		return Task{}, fmt.Errorf("task %d is out of range: the sweep %s has %d tasks (0..%d)", i, s.File, n, n-1)
	}
	t := Task{Index: i, Overrides: make([]string, len(s.Grid)), Values: map[string]any{}}
	rest := i
	for k := len(s.Grid) - 1; k >= 0; k-- {
		a := s.Grid[k]
		v := a.Values[rest%len(a.Values)]
		rest /= len(a.Values)
		t.Overrides[k] = a.Key + "=" + v.Text
		t.Values[a.Key] = v.Data
	}
	return t, nil
}

// Tasks returns every task in order.
func (s *Sweep) Tasks() []Task {
	ts := make([]Task, s.Len())
	for i := range ts {
		ts[i], _ = s.Task(i)
	}
	return ts
}

// Config loads task i's config: the base with the task's overrides, then
// extra ones (device=cpu, say).
func (s *Sweep) Config(i int, extra ...string) (*config.Config, error) {
	t, err := s.Task(i)
	if err != nil {
		return nil, err
	}
	return config.Load(s.Base, append(t.Overrides, extra...))
}

// TaskDir is the run directory of task i.
func (s *Sweep) TaskDir(i int) string {
	return filepath.Join(s.Dir, "tasks", fmt.Sprint(i))
}

// text returns task i's overrides as "key=value key=value" for messages.
func (t Task) text() string { return strings.Join(t.Overrides, " ") }

// newValue turns a grid value into --set's flow YAML and a JSON-able form.
func newValue(n *yaml.Node) (Value, error) {
	c := flowCopy(n)
	b, err := yaml.Marshal(c)
	if err != nil {
		return Value{}, err
	}
	text := strings.TrimSpace(string(b))
	if strings.Contains(text, "\n") {
		return Value{}, fmt.Errorf("value %q does not fit on one line", text)
	}
	var data any
	if err := n.Decode(&data); err != nil {
		return Value{}, err
	}
	if !jsonable(data) {
		data = text
	}
	return Value{Text: text, Data: data}, nil
}

// flowCopy copies n without comments, aliases resolved, in flow style.
func flowCopy(n *yaml.Node) *yaml.Node {
	n = config.Resolve(n)
	c := &yaml.Node{Kind: n.Kind, Tag: n.Tag, Value: n.Value, Style: n.Style &^ (yaml.LiteralStyle | yaml.FoldedStyle)}
	if n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode {
		c.Style = yaml.FlowStyle
	}
	for _, e := range n.Content {
		c.Content = append(c.Content, flowCopy(e))
	}
	return c
}

// jsonable reports whether encoding/json can encode what yaml.v3 decoded
// (maps with non-string keys cannot).
func jsonable(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			if !jsonable(e) {
				return false
			}
		}
	case []any:
		for _, e := range v {
			if !jsonable(e) {
				return false
			}
		}
	case map[any]any:
		return false
	}
	return true
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
