package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/cavforge/cavforge/pipeline/nearest"
)

// A key path names one config value by its YAML keys joined with dots. A list
// index or a map key is one segment: attack.0.eps, tcav.class_sets.zebra,
// model.input.size.1. The schema is the Config type itself, read through its
// yaml tags.

// listForm is implemented by struct types whose YAML may also be a list; it
// gives the list's element type.
type listForm interface{ listElem() reflect.Type }

// Keys lists every valid key path, sorted, with * standing for any list index
// or map key (attack.*.eps, tcav.class_sets.*).
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		if prefix != "" {
			keys = append(keys, prefix)
		}
		switch t.Kind() {
		case reflect.Struct:
			for _, f := range fieldsOf(t) {
				walk(t.Field(f.index).Type, join(prefix, f.name))
			}
			if l, ok := reflect.New(t).Interface().(listForm); ok {
				walk(l.listElem(), join(prefix, "*"))
			}
		case reflect.Slice, reflect.Array, reflect.Map:
			walk(t.Elem(), join(prefix, "*"))
		}
	}
	walk(reflect.TypeFor[Config](), "")
	sort.Strings(keys)
	return keys
}

// CheckKey reports whether key is a valid key path: known names, and indices
// where there are lists. It does not know how long the lists of a particular
// config are; Load and Set check that.
func CheckKey(key string) error {
	_, err := typeAt(key)
	return err
}

// typeAt returns the Go type of the value that key names.
func typeAt(key string) (reflect.Type, error) {
	t := reflect.TypeFor[Config]()
	segs := strings.Split(key, ".")
	for i, seg := range segs {
		at := strings.Join(segs[:i+1], ".")
		if seg == "" {
			return nil, &Error{Key: key, text: fmt.Sprintf("key %q has an empty segment", key)}
		}
		parent := strings.Join(segs[:i], ".")
		switch t.Kind() {
		case reflect.Struct:
			if f, ok := fieldByName(t, seg); ok {
				t = t.Field(f).Type
				continue
			}
			if l, ok := reflect.New(t).Interface().(listForm); ok && isIndex(seg) {
				t = l.listElem()
				continue
			}
			return nil, unknownKey("", at, parent, names(t))
		case reflect.Slice, reflect.Array:
			if !isIndex(seg) {
				return nil, &Error{Key: at, text: fmt.Sprintf("%s is a list: want a numeric index, got %q", parent, seg)}
			}
			if n, _ := strconv.Atoi(seg); t.Kind() == reflect.Array && n >= t.Len() {
				return nil, &Error{Key: at, text: fmt.Sprintf("%s has %d elements: index %s is out of range", parent, t.Len(), seg)}
			}
			t = t.Elem()
		case reflect.Map:
			t = t.Elem()
		default:
			return nil, &Error{Key: at, text: fmt.Sprintf("%s is a single value: it has no key %q", parent, seg)}
		}
	}
	return t, nil
}

// unknownKey reports key as unknown, suggesting the sibling name nearest to
// its last segment when there is one close enough to be a typo.
func unknownKey(pos, key, parent string, siblings []string) *Error {
	seg := key[strings.LastIndex(key, ".")+1:]
	text := fmt.Sprintf("unknown key %q", key)
	if s := closest(seg, siblings); s != "" {
		text += fmt.Sprintf(" (did you mean %q?)", join(parent, s))
	}
	return &Error{Pos: pos, Key: key, text: text}
}

// closest returns the candidate closest to s in edit distance, or "" when
// none is close enough to be a typo of it.
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := nearest.Distance(strings.ToLower(s), c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > 3 || 2*bestD > len(s)+1 {
		return ""
	}
	return best
}

type field struct {
	name  string
	index int
}

// fieldsOf lists a struct's YAML keys in declaration order.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		fs = append(fs, field{name, i})
	}
	return fs
}

func fieldByName(t reflect.Type, name string) (int, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f.index, true
		}
	}
	return 0, false
}

func names(t reflect.Type) []string {
	var ns []string
	for _, f := range fieldsOf(t) {
		ns = append(ns, f.name)
	}
	return ns
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
