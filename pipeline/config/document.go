package config

import (
	"os"
	"reflect"

	"gopkg.in/yaml.v3"
)

// Document is a YAML file other than a config (a sweep file) read by the
// config's rules, so that every file cavforge reads reports mistakes the
// same way: "file:line: key: what is wrong", with a did-you-mean for a
// misspelt key.
type Document struct{ d *decoder }

// DecodeFile reads the YAML file at path into v, a pointer to a struct whose
// fields carry yaml tags, as Load reads a config: unknown keys, duplicate
// keys and values of the wrong type are an *Error naming the file, line and
// key. A yaml.Node field takes its value as written (aliases resolved) for
// the caller to read; it stays zero when the key is absent. kind names the
// file in messages ("sweep file").
func DecodeFile(path, kind string, v any) (*Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	root, err := parseDocument(path, kind, data)
	if err != nil {
		return nil, err
	}
	d := newDecoder(path)
	if err := d.decode(root, reflect.ValueOf(v).Elem(), ""); err != nil {
		return nil, err
	}
	return &Document{d: d}, nil
}

// Errorf is an error about key at the line that set it, or naming the file
// alone when the file does not set it.
func (doc *Document) Errorf(key, format string, args ...any) error {
	return doc.d.locate(keyError(key, format, args...))
}

// ErrorAt is an error about key at node n, a node of a yaml.Node field.
func (doc *Document) ErrorAt(n *yaml.Node, key, format string, args ...any) error {
	return doc.d.errorf(n, key, format, args...)
}

// Has reports whether the file sets key.
func (doc *Document) Has(key string) bool {
	_, ok := doc.d.pos[key]
	return ok
}

// Resolve follows an alias to the node it names.
func Resolve(n *yaml.Node) *yaml.Node { return deref(n) }

// IsNull reports whether n is absent or null.
func IsNull(n *yaml.Node) bool { return isNull(n) }

// Describe says what a node is, for "want X, got Y".
func Describe(n *yaml.Node) string { return describe(n) }

var nodeType = reflect.TypeFor[yaml.Node]()

// keepNode stores n, as written, in a yaml.Node field.
func keepNode(n *yaml.Node, v reflect.Value) bool {
	if v.Type() != nodeType {
		return false
	}
	v.Set(reflect.ValueOf(*n))
	return true
}
