package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem with one config key. It reads
// "configs/x.yaml:12: tcav.cav.alpha: ...", or "--set seed=x: seed: ..." when
// an override is to blame.
type Error struct {
	// Pos is where the key was set: "file:line", "file" when the value is a
	// default, "--set key=value", or "" when unknown.
	Pos string
	// Key is the dotted key path.
	Key  string
	text string
}

func (e *Error) Error() string {
	if e.Pos == "" {
		return e.text
	}
	return e.Pos + ": " + e.text
}

func keyError(key, format string, args ...any) *Error {
	return &Error{Key: key, text: key + ": " + fmt.Sprintf(format, args...)}
}

// Load reads the config at path, applies the overrides ("key.path=value",
// the value parsed as YAML) in order, fills the defaults, resolves relative
// paths against the file's directory and validates the result.
func Load(path string, overrides []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	root, err := parseDocument(path, "config", data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	d := newDecoder(path)
	c, err := d.build(root, overrides, dir)
	if err != nil {
		return nil, err
	}
	if c.Name == "" {
		c.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if err := c.Validate(); err != nil {
		return nil, d.locate(err)
	}
	return c, nil
}

// Set applies overrides ("key.path=value") to a resolved config, as Load
// does. Relative paths in them resolve against the directory of the file c
// was loaded from. Defaults that were derived from other fields when c was
// loaded (class_sets, judge_random) keep their values. On error c is
// unchanged.
func (c *Config) Set(overrides ...string) error {
	var root yaml.Node
	if err := root.Encode(c); err != nil {
		return err
	}
	d := newDecoder("")
	nc, err := d.build(&root, overrides, c.dir)
	if err != nil {
		return err
	}
	if err := nc.Validate(); err != nil {
		return d.locate(err)
	}
	nc.batchSizeSet = c.batchSizeSet
	for _, o := range overrides {
		key, _, _ := strings.Cut(o, "=")
		nc.batchSizeSet = nc.batchSizeSet || key == "data.batch_size" || key == "data"
	}
	*c = *nc
	return nil
}

// build applies the overrides to the document root and decodes it over the
// defaults.
func (d *decoder) build(root *yaml.Node, overrides []string, dir string) (*Config, error) {
	for _, o := range overrides {
		if err := d.override(root, o); err != nil {
			return nil, err
		}
	}
	c := Default()
	c.TCAV.ClassSets = nil             // only the file's own entries before derive
	c.TCAV.CAV.TransferClassifier = "" // derived from the file's classifier unless given
	if err := d.decode(root, reflect.ValueOf(c).Elem(), ""); err != nil {
		return nil, err
	}
	c.dir = dir
	c.batchSizeSet = hasKey(root, "data", "batch_size")
	paths := []*string{&c.CacheDir, &c.Model.Path, &c.Model.Labels, &c.Data.Root, &c.TCAV.CAVsFrom}
	for i := range c.Facets {
		paths = append(paths, &c.Facets[i].PoisonedFrom)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) && dir != "" {
			*p = filepath.Join(dir, *p)
		}
	}
	c.derive()
	return c, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parseDocument parses one YAML document into its top-level mapping.
func parseDocument(path, kind string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		msg := err.Error()
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s: %s", path, m[1], msg[len(m[0]):])
		}
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(msg, "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: a %s is one YAML document; found another", path, extra.Line, kind)
	}
	if len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode && !isNull(root) {
		return nil, fmt.Errorf("%s:%d: want a mapping of %s keys at the top level", path, root.Line, kind)
	}
	if isNull(root) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	return root, nil
}

// decoder turns a yaml.Node tree into a Config, remembering where each key
// came from so that errors can point at it.
type decoder struct {
	file   string
	origin map[*yaml.Node]string // nodes that came from an override, with it
	pos    map[string]string     // key path -> where it was set
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, origin: map[*yaml.Node]string{}, pos: map[string]string{}}
}

func (d *decoder) where(n *yaml.Node) string {
	if o, ok := d.origin[n]; ok {
		return o
	}
	if n.Line > 0 && d.file != "" {
		return fmt.Sprintf("%s:%d", d.file, n.Line)
	}
	return d.file
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) *Error {
	e := keyError(key, format, args...)
	e.Pos = d.where(n)
	return e
}

// locate gives a validation error the position of its key, or of the nearest
// enclosing key that the file or an override set.
func (d *decoder) locate(err error) error {
	var e *Error
	if !errors.As(err, &e) || e.Pos != "" {
		return err
	}
	for k := e.Key; ; {
		if p, ok := d.pos[k]; ok {
			e.Pos = p
			return e
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	e.Pos = d.file
	return e
}

// union is implemented by types with more than one YAML form.
type union interface {
	decodeYAML(d *decoder, n *yaml.Node, key string) error
}

// decode sets v from n. v holds the default, which a null node keeps.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) error {
	n = deref(n)
	if key != "" {
		d.pos[key] = d.where(n)
	}
	if keepNode(n, v) {
		return nil
	}
	if isNull(n) {
		return nil
	}
	if u, ok := v.Addr().Interface().(union); ok {
		return u.decodeYAML(d, n, key)
	}
	switch v.Kind() {
	case reflect.Struct:
		return d.fields(n, v, key)
	case reflect.Slice:
		return d.list(n, v, key)
	case reflect.Array:
		if n.Kind != yaml.SequenceNode || len(n.Content) != v.Len() {
			return d.errorf(n, key, "want a list of %d %s, got %s", v.Len(), plural(v.Type().Elem()), describe(n))
		}
		for i, e := range n.Content {
			if err := d.decode(e, v.Index(i), join(key, strconv.Itoa(i))); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		return d.dict(n, v, key)
	default:
		return d.scalar(n, v, key)
	}
}

// fields decodes a mapping into a struct by the yaml tags of its fields.
func (d *decoder) fields(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, key, "want a mapping, got %s", describe(n))
	}
	// Merged mappings (<<: *anchor) come first; the mapping's own keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Tag == "!!merge" {
			for _, m := range merged(n.Content[i+1]) {
				if err := d.fields(m, v, key); err != nil {
					return err
				}
			}
		}
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Tag == "!!merge" {
			continue
		}
		full := join(key, k.Value)
		if k.Kind != yaml.ScalarNode {
			return d.errorf(k, key, "want a key name, got %s", describe(k))
		}
		if first, dup := seen[k.Value]; dup {
			return &Error{Pos: d.where(k), Key: full, text: fmt.Sprintf("duplicate key %q (first at line %d)", full, first.Line)}
		}
		seen[k.Value] = k
		f, ok := fieldByName(v.Type(), k.Value)
		if !ok {
			return unknownKey(d.where(k), full, key, names(v.Type()))
		}
		if err := d.decode(n.Content[i+1], v.Field(f), full); err != nil {
			return err
		}
	}
	return nil
}

func merged(n *yaml.Node) []*yaml.Node {
	n = deref(n)
	if n.Kind == yaml.SequenceNode {
		var ms []*yaml.Node
		for _, e := range n.Content {
			ms = append(ms, deref(e))
		}
		return ms
	}
	return []*yaml.Node{n}
}

// list decodes a sequence into a slice. A scalar where a list of scalars is
// wanted is a list of one, so that `eps: 0.01` and `layers: conv1` work.
func (d *decoder) list(n *yaml.Node, v reflect.Value, key string) error {
	et := v.Type().Elem()
	items := n.Content
	switch {
	case n.Kind == yaml.ScalarNode && isScalarKind(et.Kind()):
		items = []*yaml.Node{n}
	case n.Kind != yaml.SequenceNode:
		return d.errorf(n, key, "want a list of %s, got %s", plural(et), describe(n))
	}
	if len(items) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	s := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, e := range items {
		if def, ok := elementDefaults[et]; ok {
			s.Index(i).Set(def())
		}
		ekey := join(key, strconv.Itoa(i))
		if e == n {
			ekey = key
		}
		if err := d.decode(e, s.Index(i), ekey); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

// dict decodes a mapping into a map with string keys; the file's entries
// replace the default map.
func (d *decoder) dict(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, key, "want a mapping, got %s", describe(n))
	}
	m := reflect.MakeMap(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k.Kind != yaml.ScalarNode || isNull(k) {
			return d.errorf(k, key, "want a name as key, got %s", describe(k))
		}
		full := join(key, k.Value)
		if first, dup := seen[k.Value]; dup {
			return &Error{Pos: d.where(k), Key: full, text: fmt.Sprintf("duplicate key %q (first at line %d)", full, first.Line)}
		}
		seen[k.Value] = k
		e := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(n.Content[i+1], e, full); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(k.Value), e)
	}
	v.Set(m)
	return nil
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, key string) error {
	want := article(v.Type())
	if n.Kind != yaml.ScalarNode {
		return d.errorf(n, key, "want %s, got %s", want, describe(n))
	}
	switch v.Kind() {
	case reflect.String:
		// Any scalar is text: targets may be written as 340 or "340".
		v.SetString(n.Value)
		return nil
	case reflect.Int, reflect.Int64:
		// yaml.v3 would truncate 3.5 to 3; an integer key takes whole
		// numbers only, written as 3 or 3.0 or 1e3.
		var x any
		if err := n.Decode(&x); err != nil {
			return d.errorf(n, key, "want %s, got %s", want, describe(n))
		}
		var i int64
		switch x := x.(type) {
		case int:
			i = int64(x)
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return d.errorf(n, key, "want %s, got %s", want, describe(n))
			}
			i = int64(x)
		default:
			return d.errorf(n, key, "want %s, got %s", want, describe(n))
		}
		if v.OverflowInt(i) {
			return d.errorf(n, key, "want %s, got %s", want, describe(n))
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if err := n.Decode(&f); err != nil {
			return d.errorf(n, key, "want %s, got %s", want, describe(n))
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if err := n.Decode(&b); err != nil {
			return d.errorf(n, key, "want %s, got %s", want, describe(n))
		}
		v.SetBool(b)
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), key))
	}
	return nil
}

func (r *RandomSets) decodeYAML(d *decoder, n *yaml.Node, key string) error {
	switch n.Kind {
	case yaml.MappingNode:
		r.Sets = nil
		return d.fields(n, reflect.ValueOf(r).Elem(), key)
	case yaml.SequenceNode:
		var sets []string
		if err := d.list(n, reflect.ValueOf(&sets).Elem(), key); err != nil {
			return err
		}
		*r = RandomSets{Sets: sets}
		return nil
	}
	return d.errorf(n, key, "want {prefix: P, count: N} or a list of set names, got %s", describe(n))
}

func (RandomSets) listElem() reflect.Type { return reflect.TypeFor[string]() }

func (t *FacetTarget) decodeYAML(d *decoder, n *yaml.Node, key string) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*t = FacetTarget{Class: n.Value}
		return nil
	case yaml.MappingNode:
		*t = FacetTarget{}
		return d.fields(n, reflect.ValueOf(t).Elem(), key)
	}
	return d.errorf(n, key, "want a class name or index, or {layer: L, channel: C}, got %s", describe(n))
}

// override applies one "key.path=value" to the document root. Missing
// mappings on the way are created; a list that the file leaves out is filled
// with its default first, so that model.input.size.0=300 works.
func (d *decoder) override(root *yaml.Node, o string) error {
	key, text, ok := strings.Cut(o, "=")
	key = strings.TrimSpace(key)
	pos := "--set " + o
	if !ok || key == "" {
		return &Error{Pos: pos, text: "want key.path=value"}
	}
	if err := CheckKey(key); err != nil {
		e := err.(*Error)
		e.Pos = pos
		return e
	}
	value, err := parseValue(text)
	if err != nil {
		return &Error{Pos: pos, Key: key, text: fmt.Sprintf("%s: value is not YAML: %s", key, strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	walkNodes(value, func(n *yaml.Node) { d.origin[n] = pos })

	segs := strings.Split(key, ".")
	cur := root
	for i, seg := range segs {
		at := strings.Join(segs[:i+1], ".")
		parent := strings.Join(segs[:i], ".")
		var slot **yaml.Node
		switch cur.Kind {
		case yaml.MappingNode:
			for j := 0; j+1 < len(cur.Content); j += 2 {
				if k := cur.Content[j]; k.Tag != "!!merge" && k.Value == seg {
					slot = &cur.Content[j+1]
				}
			}
			if slot == nil {
				cur.Content = append(cur.Content,
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: seg},
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"})
				slot = &cur.Content[len(cur.Content)-1]
			}
		case yaml.SequenceNode:
			idx, err := strconv.Atoi(seg)
			if err != nil || idx >= len(cur.Content) {
				return &Error{Pos: pos, Key: at, text: fmt.Sprintf("%s: index %s is out of range: %s has %d elements", at, seg, parent, len(cur.Content))}
			}
			slot = &cur.Content[idx]
		default:
			return &Error{Pos: pos, Key: at, text: fmt.Sprintf("%s: %s is %s here, not a mapping or list", at, parent, describe(cur))}
		}
		if i == len(segs)-1 {
			*slot = value
			return nil
		}
		next := *slot
		switch {
		case next.Kind == yaml.AliasNode:
			// Do not write through an alias into the anchored node.
			next = deepCopy(deref(next))
		case isNull(next):
			next = d.materialize(segs[:i+1], segs[i+1])
		}
		*slot = next
		if next.Kind == yaml.SequenceNode && !isIndex(segs[i+1]) || next.Kind == yaml.MappingNode && isIndex(segs[i+1]) && !isMapKey(at) {
			return &Error{Pos: pos, Key: key, text: fmt.Sprintf("%s: %s is %s here", key, at, describe(next))}
		}
		cur = next
	}
	return nil
}

// isMapKey reports whether key names a map, whose keys may look like numbers.
func isMapKey(key string) bool {
	t, err := typeAt(key)
	return err == nil && t.Kind() == reflect.Map
}

// materialize makes the node for a key that the file leaves out, when an
// override reaches inside it: the default value where the next segment
// indexes a list, an empty mapping otherwise.
func (d *decoder) materialize(segs []string, next string) *yaml.Node {
	if isIndex(next) && !isMapKey(strings.Join(segs, ".")) {
		if v, ok := defaultAt(segs); ok {
			var n yaml.Node
			if err := n.Encode(v.Interface()); err == nil {
				return &n
			}
		}
		return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	}
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
}

// defaultAt returns the default value at a key path; list entries beyond the
// default list get their element default.
func defaultAt(segs []string) (reflect.Value, bool) {
	v := reflect.ValueOf(Default()).Elem()
	for _, seg := range segs {
		switch v.Kind() {
		case reflect.Struct:
			f, ok := fieldByName(v.Type(), seg)
			if !ok {
				return reflect.Value{}, false
			}
			v = v.Field(f)
		case reflect.Slice, reflect.Array:
			i, _ := strconv.Atoi(seg)
			switch def, ok := elementDefaults[v.Type().Elem()]; {
			case i < v.Len():
				v = v.Index(i)
			case ok:
				v = def()
			default:
				return reflect.Value{}, false
			}
		default:
			return reflect.Value{}, false
		}
	}
	return v, true
}

func parseValue(s string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}, nil
	}
	return doc.Content[0], nil
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func walkNodes(n *yaml.Node, f func(*yaml.Node)) {
	f(n)
	for _, c := range n.Content {
		walkNodes(c, f)
	}
}

func deepCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, e := range n.Content {
		c.Content[i] = deepCopy(deref(e))
	}
	return &c
}

func isScalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Int, reflect.Int64, reflect.Float64, reflect.Bool:
		return true
	}
	return false
}

// describe says what a node is, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if isNull(n) {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

func article(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	}
	return "a " + t.Kind().String()
}

func plural(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "strings"
	case reflect.Int, reflect.Int64:
		return "integers"
	case reflect.Float64:
		return "numbers"
	case reflect.Bool:
		return "booleans"
	case reflect.Struct:
		return "mappings"
	}
	return "values"
}

// hasKey reports whether the mapping n holds the nested key path.
func hasKey(n *yaml.Node, path ...string) bool {
	if n == nil {
		return false
	}
	n = deref(n)
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = deref(n.Content[0])
	}
	if len(path) == 0 {
		return true
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == path[0] {
			return hasKey(n.Content[i+1], path[1:]...)
		}
	}
	return false
}
