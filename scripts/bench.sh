#!/usr/bin/env bash
# `make bench` (after `make build`): cavforge's TCAV gradient pass next to the
# same work as a plain libtorch C++ loop (build/bin/bench_baseline), on a
# random-weight GoogLeNet (inception4c, 224x224) and on the small demo model.
# Prints tables; never pass/fail on time.
#
#   BENCH_SECONDS=5   seconds per batch size and side (cavforge --seconds)
#   BENCH_BATCHES=1,16,64
#   BENCH_DEVICE=cpu  cpu | cuda | cuda:N | auto
#   BENCH_PYTHON=/usr/bin/python3   python with torch + torchvision, for the
#                                   one-time GoogLeNet export
set -euo pipefail
cd "$(dirname "$0")/.."
# cavforge runs with passive OpenMP waiting unless told otherwise (see
# cmd/cavforge/main.go); the C++ loops get the same policy.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

seconds="${BENCH_SECONDS:-5}"
batches="${BENCH_BATCHES:-1,16,64}"
device="${BENCH_DEVICE:-cpu}"
py="${BENCH_PYTHON:-/usr/bin/python3}"
build=build
cavforge=bin/cavforge
baseline="$build/bin/bench_baseline"

section() { printf '\n=== %s ===\n' "$*"; }

if [[ ! -x "$cavforge" || ! -f "$build/CMakeCache.txt" ]]; then
  echo "bench: run 'make build' first (needs $cavforge and a configured $build/)" >&2
  exit 1
fi

section "machine"
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)
echo "host:     $(uname -n) ($(uname -m), $(nproc) CPUs available, ${cpu_model:-unknown CPU})"
echo "settings: --seconds $seconds, batches $batches, device $device"
"$cavforge" version

section "building the C++ baseline"
cmake --build "$build" --target bench_baseline -j"$(nproc)"

googlenet="$build/models/googlenet.pt"
if [[ ! -f "$googlenet" ]]; then
  section "exporting GoogLeNet (random weights)"
  if "$py" -c 'import torch, torchvision' 2>/dev/null; then
    "$py" scripts/export_torchvision.py --model googlenet --mode trace --size 224 --out "$googlenet"
  else
    echo "bench: $py has no torch/torchvision; skipping GoogLeNet (make setup installs python3-torchvision)" >&2
    googlenet=""
  fi
fi

run() {  # MODEL LAYER C,H,W
  section "$1 @ $2"
  "$cavforge" bench "$1" --layer "$2" --input "$3" --batches "$batches" \
    --seconds "$seconds" --device "$device" --baseline "$baseline"
}

if [[ -n "$googlenet" ]]; then
  run "$googlenet" inception4c 3,224,224
fi
run testdata/demo/model.pt block3 3,64,64

# A whole TCAV experiment: 3 concepts and 10 random sets of 50 images, 50
# class images, 2 layers, timed per stage (cache off), next to the C++ loop
# doing the same forward/backward passes on the same device.
tcav_experiment() {  # MODEL L1,L2 SIZE
  local model=$1 layers=$2 size=$3 data="$build/bench-data-$3"
  section "full TCAV experiment: $(basename "$model") @ $layers, ${size}px"
  if [[ ! -d "$data" ]]; then
    "$py" - "$data" "$size" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root, size = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
sets = ["zebra"] + [f"concept_{i}" for i in range(3)] + [f"random500_{i}" for i in range(10)]
for s in sets:
    os.makedirs(os.path.join(root, s), exist_ok=True)
    for i in range(50):
        small = (rng.random((7, 7, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((size, size), Image.BILINEAR).save(os.path.join(root, s, f"{i:03d}.png"))
PY
  fi
  local cfg="$build/bench-tcav-$size.yaml" out="$build/bench-run-$size"
  cat > "$cfg" <<YAML
name: bench-tcav
device: $device
cache_dir: bench-cache
model:
  path: $(realpath "$model")
  input: {size: [$size, $size], resize: $size}
data: {root: $(realpath "$data"), max_images: 50, batch_size: 32}
tcav:
  targets: ["0"]
  class_sets: {"0": zebra}
  concepts: [concept_0, concept_1, concept_2]
  random: {prefix: random500_, count: 10}
  layers: [${layers//,/, }]
YAML
  rm -rf "$out"
  "$cavforge" run "$cfg" --out "$out" --force --log-format json 2>/dev/null >/dev/null
  local base
  base=$(BENCH_THREADS=$(nproc) "$baseline" --tcav "$model" "$layers" "3,$size,$size" 32 650 50 "$(sed -n 's/.*"device": "\(.*\)".*/\1/p' "$out/manifest.json" | head -n1)")
  python3 - "$out/manifest.json" <<PY
import json, sys
st = json.load(open(sys.argv[1]))["stage_seconds"]
base = dict(l.split() for l in """$base""".strip().splitlines())
act, fit, score = st["extract activations"], st["fit CAVs"], st["score"]
total = act + fit + score
print(f"{'stage':28s} {'cavforge s':>11s} {'C++ loop s':>11s}")
print(f"{'extract activations (650)':28s} {act:11.2f} {float(base['activations_s']):11.2f}")
print(f"{'class gradients + scores':28s} {score:11.2f} {float(base['gradients_s']):11.2f}")
print(f"{'fit CAVs (80, sgd-hinge)':28s} {fit:11.2f} {'-':>11s}")
print(f"{'total':28s} {total:11.2f} {float(base['total_s']):11.2f}   ratio {total/float(base['total_s']):.3f}")
print("cavforge also decodes and resizes the PNGs; the C++ loop feeds one prepared tensor.")
PY
}

if [[ -n "$googlenet" ]]; then
  tcav_experiment "$googlenet" inception4c,inception4e 224
fi
tcav_experiment testdata/demo/model.pt block2,block3 64
echo
echo "ratio = cavforge img/s / C++ loop img/s (1.000 = no Go overhead); the C++ loop runs as many iterations as cavforge did."
