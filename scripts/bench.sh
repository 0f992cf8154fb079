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
echo
echo "ratio = cavforge img/s / C++ loop img/s (1.000 = no Go overhead); the C++ loop runs as many iterations as cavforge did."
