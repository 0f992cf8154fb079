package config

import (
	"reflect"
	"testing"
)

// A layer or target only one stage names must still be prepared and
// checked: the shim reloads the module for a layer it was not prepared with.
func TestLayersAndTargetsCoverEveryStageEachLayerOnce(t *testing.T) {
	c := &Config{}
	c.TCAV.Layers = []string{"block2", "block3"}
	c.TCAV.Targets = []string{"zebra"}
	c.TCAV.ClassSets = map[string]string{"zebra": "zebra-images"}
	c.Attack = []Attack{{Layer: "block3", Target: "cat"}}
	c.Facets = []Facet{{FacetLayers: []string{"block1"}, Target: FacetTarget{Layer: "block4"}}}
	if got, want := c.Layers(), []string{"block2", "block3", "block1", "block4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Layers() = %v, want %v", got, want)
	}
	if got, want := c.Targets(), []string{"zebra", "cat"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Targets() = %v, want %v", got, want)
	}
	if c.ClassSet("zebra") != "zebra-images" || c.ClassSet("cat") != "cat" {
		t.Errorf("ClassSet: zebra → %s, cat → %s", c.ClassSet("zebra"), c.ClassSet("cat"))
	}
}
