package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Marshal writes the resolved config, every default filled in and every path
// absolute, as YAML that Load reads back to an equal Config. The output is
// canonical: the same config always gives the same bytes.
func (c *Config) Marshal() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, err
	}
	if !c.batchSizeSet {
		unsetBatchSize(&n)
	}
	walkNodes(&n, func(n *yaml.Node) {
		if n.Kind == yaml.SequenceNode && allScalars(n.Content) {
			n.Style = yaml.FlowStyle
		}
	})
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Hash is the hex SHA-256 of the canonical YAML of the resolved config. The
// paths in it are absolute, so one experiment in two checkouts hashes
// differently; content-addressed caches key on file hashes instead.
func (c *Config) Hash() (string, error) {
	b, err := c.Marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// MarshalYAML writes the {from, count} or {prefix, count} form when the sets
// were given that way, and the list of names otherwise.
func (r RandomSets) MarshalYAML() (any, error) {
	if r.From != "" {
		return struct {
			From  string `yaml:"from"`
			Count int    `yaml:"count"`
		}{r.From, r.Count}, nil
	}
	if r.Prefix != "" {
		return struct {
			Prefix string `yaml:"prefix"`
			Count  int    `yaml:"count"`
		}{r.Prefix, r.Count}, nil
	}
	if r.Sets == nil {
		return []string{}, nil
	}
	return r.Sets, nil
}

// MarshalYAML writes a class as its name or index and a channel as
// {layer, channel}.
func (t FacetTarget) MarshalYAML() (any, error) {
	if t.Layer != "" || t.Class == "" && t.Channel != 0 {
		return struct {
			Layer   string `yaml:"layer"`
			Channel int    `yaml:"channel"`
		}{t.Layer, t.Channel}, nil
	}
	// A class index stays a string: "340", not 340.
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t.Class}, nil
}

func allScalars(ns []*yaml.Node) bool {
	for _, n := range ns {
		if n.Kind != yaml.ScalarNode {
			return false
		}
	}
	return true
}

// unsetBatchSize leaves data.batch_size out of the resolved YAML, with a
// comment, so that reading it back keeps the batch size unset (the
// activation pass measures its own; other passes use the default).
func unsetBatchSize(root *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "data" || root.Content[i+1].Kind != yaml.MappingNode {
			continue
		}
		data := root.Content[i+1]
		for j := 0; j+1 < len(data.Content); j += 2 {
			if data.Content[j].Value == "batch_size" {
				data.Content = append(data.Content[:j], data.Content[j+2:]...)
				root.Content[i].HeadComment = fmt.Sprintf("data.batch_size not set: %d for gradient passes; the activation pass picks its own (manifest.json: activation_pass)", Default().Data.BatchSize)
				return
			}
		}
	}
}
