// Package facets is the "render facets" stage: faceted feature visualization
// (SPEC §5). A target (a class logit or a channel) is visualized "through" a
// facet, a concept direction fitted on example images, so the picture shows
// how the model draws the target in the facet's terms; fitting the facet on
// poisoned examples shows what the poisoning does to the picture.
//
// The seams are those of lucid's optvis: param (how the image is
// represented), transform (random jitter, scale and rotation), objective
// (what is maximized, composable) and render (the Adam loop). direction.go
// turns CAVs into facet directions and measures images along them;
// sheet.go lays renders out side by side.
package facets
