package config

import "fmt"

// Targets are every class any stage explains or attacks, as written.
func (c *Config) Targets() []string {
	out := append([]string(nil), c.TCAV.Targets...)
	for _, a := range c.Attack {
		out = append(out, a.Target)
	}
	for _, f := range c.Facets {
		if f.Target.Class != "" {
			out = append(out, f.Target.Class)
		}
	}
	return out
}

// Layers are every layer any stage asks for, each once, in config order.
func (c *Config) Layers() []string {
	seen := map[string]bool{}
	var out []string
	add := func(ls ...string) {
		for _, l := range ls {
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	add(c.TCAV.Layers...)
	for _, a := range c.Attack {
		add(a.Layer)
	}
	for _, f := range c.Facets {
		add(f.FacetLayers...)
		if f.Target.Layer != "" {
			add(f.Target.Layer)
		}
	}
	return out
}

// ClassSet is the image set of a target class: tcav.class_sets names it,
// else the set is named as the target.
func (c *Config) ClassSet(target string) string {
	if s, ok := c.TCAV.ClassSets[target]; ok && s != "" {
		return s
	}
	return target
}

// Name is a facet target as results.json names it: the class, or the
// layer and channel.
func (t FacetTarget) Name() string {
	if t.Class != "" {
		return t.Class
	}
	return fmt.Sprintf("%s-ch%d", t.Layer, t.Channel)
}
