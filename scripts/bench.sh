#!/usr/bin/env bash
# `make bench` (after `make build`): cavforge's activation pass, class-gradient
# pass and PGD step next to the same work done the fastest way known as a
# plain libtorch C++ loop (the floor: build/bin/bench_baseline --serve), in one
# run, taking turns, on a random-weight GoogLeNet (inception4c), a
# random-weight MobileNetV2 (features.12, depthwise convolutions), both at
# 224x224, and the small demo model; then whole TCAV experiments per stage.
# Prints tables; never pass/fail on time.
#
#   BENCH_SECONDS=2   seconds per measurement and side
#   BENCH_ROUNDS=3    interleaved measurements per side (the medians are shown)
#   BENCH_BATCHES=1,2,8,32
#   BENCH_DEVICE=cpu  cpu | cuda | cuda:N | auto
#   BENCH_OMP=0       1: also time the whole MobileNetV2 TCAV run with
#                     OMP_WAIT_POLICY=passive and =active, alternating
#   BENCH_PYTHON=/usr/bin/python3   python with torch + torchvision, for the
#                                   one-time model exports (random weights)
set -euo pipefail
cd "$(dirname "$0")/.."
# cavforge runs with passive OpenMP waiting unless told otherwise (see
# cmd/cavforge/main.go); the C++ loops get the same policy.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

seconds="${BENCH_SECONDS:-2}"
rounds="${BENCH_ROUNDS:-3}"
batches="${BENCH_BATCHES:-1,2,8,32}"
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

export_model() {  # NAME -> path of build/models/NAME.pt, or "" when it cannot be made
  local out="$build/models/$1.pt"
  if [[ ! -f "$out" ]]; then
    if "$py" -c 'import torch, torchvision' 2>/dev/null; then
      section "exporting $1 (random weights)" >&2
      "$py" scripts/export_torchvision.py --model "$1" --mode trace --size 224 --out "$out" >&2
    else
      echo "bench: $py has no torch/torchvision; skipping $1 (make setup installs python3-torchvision)" >&2
      out=""
    fi
  fi
  echo "$out"
}
googlenet=$(export_model googlenet)
mobilenet=$(export_model mobilenet_v2)

run() {  # MODEL LAYER C,H,W
  section "$1 @ $2"
  "$cavforge" bench "$1" --layer "$2" --input "$3" --batches "$batches" --passes act,grad,pgd \
    --seconds "$seconds" --rounds "$rounds" --device "$device" --baseline "$baseline"
}

if [[ -n "$mobilenet" ]]; then
  run "$mobilenet" features.12 3,224,224
fi
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
  local cfg="$build/bench-tcav-$(basename "$model" .pt)-$size.yaml" out="$build/bench-run-$(basename "$model" .pt)-$size"
  cat > "$cfg" <<YAML
name: bench-tcav
device: $device
cache_dir: bench-cache
model:
  path: $(realpath "$model")
  input: {size: [$size, $size]}
data: {root: $(realpath "$data"), max_images: 50}
tcav:
  targets: ["0"]
  class_sets: {"0": zebra}
  concepts: [concept_0, concept_1, concept_2]
  random: {prefix: random500_, count: 10}
  layers: [${layers//,/, }]
YAML
  rm -rf "$out"
  if ! "$cavforge" run "$cfg" --out "$out" --force --log-format json 2>"$out.log" >/dev/null; then
    echo "bench: cavforge run $cfg failed:" >&2; tail -n 3 "$out.log" >&2; return 1
  fi
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
ap = json.load(open(sys.argv[1])).get("activation_pass") or {}
print(f"cavforge activation pass: batch {ap.get('batch_size')}, channels_last {ap.get('channels_last')} ({ap.get('source')}); {ap.get('plan')}")
print("cavforge also decodes and resizes the PNGs; the C++ loop feeds one prepared tensor (batch 32, unpruned).")
PY
}

if [[ -n "$mobilenet" ]]; then
  tcav_experiment "$mobilenet" features.12 224
fi
if [[ -n "$googlenet" ]]; then
  tcav_experiment "$googlenet" inception4c,inception4e 224
fi
tcav_experiment testdata/demo/model.pt block2,block3 64

# OpenMP's wait policy with Go's threads busy (decode-ahead of the next image
# set runs while libtorch computes): the whole TCAV run, alternating.
if [[ "${BENCH_OMP:-0}" == 1 && -n "$mobilenet" ]]; then
  section "OMP_WAIT_POLICY: whole MobileNetV2 TCAV run (features.12, 650 + 50 images, cache off)"
  printf '%-10s %8s %12s %10s\n' policy round "activations" total
  for round in 1 2 3; do
    for policy in passive active; do
      out="$build/bench-omp-$policy"
      rm -rf "$out"
      OMP_WAIT_POLICY=$policy "$cavforge" run "$build/bench-tcav-mobilenet_v2-224.yaml" --out "$out" --force --log-format json 2>/dev/null >/dev/null
      python3 - "$out/manifest.json" "$policy" "$round" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["stage_seconds"]
print(f"{sys.argv[2]:10s} {sys.argv[3]:>8s} {st['extract activations']:12.2f} {sum(st.values()):10.2f}")
PY
    done
  done
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
echo
echo "floor÷cavforge > 1: cavforge is slower than the C++ floor by that factor (medians over interleaved rounds)."
