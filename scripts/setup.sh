#!/usr/bin/env bash
# Installs what cavforge needs and is missing, and says what it did.
# Debian/Ubuntu: apt packages (as root; otherwise prints the command), Go
# modules. libtorch comes from Torch_DIR/CMAKE_PREFIX_PATH, an installed
# PyTorch (how GPU nodes get CUDA), or Debian's libtorch-dev, in that order.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have_cmd cmake || need+=(cmake)
have_cmd g++ || need+=(g++)
have_cmd make || need+=(make)
have_cmd ccache || need+=(ccache)

torch_found=""
if [[ -n "${Torch_DIR:-}" || -n "${CMAKE_PREFIX_PATH:-}" ]]; then
  torch_found="from Torch_DIR/CMAKE_PREFIX_PATH"
else
  for py in python3 /usr/bin/python3; do
    if have_cmd "$py"; then
      p=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
      if [[ -n "$p" && -f "$p/Torch/TorchConfig.cmake" ]]; then
        torch_found="from PyTorch at $p"
        break
      fi
    fi
  done
fi
if [[ -z "$torch_found" ]]; then
  if [[ -f /usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake ]] || have_pkg libtorch-dev; then
    torch_found="from Debian libtorch-dev"
  else
    need+=(libtorch-dev)
  fi
fi
# Model export scripts and benchmark fixtures use Debian's PyTorch.
have_pkg python3-torchvision || need+=(python3-torch python3-torchvision)

# Test-only tools: `make test` renders the report in headless Chromium and
# compares the CAV classifiers with scikit-learn. Without them those tests
# skip and say why; as root they are installed (about 165 MB of downloads).
tests=()
have_cmd chromium || tests+=(chromium)
have_pkg python3-sklearn || tests+=(python3-sklearn)
if ((${#tests[@]})); then
  if [[ $(id -u) -eq 0 ]] && have_cmd apt-get; then
    need+=("${tests[@]}")
  else
    echo "setup: for the full test suite also install: ${tests[*]} (those tests skip without them)" >&2
  fi
fi

if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && have_cmd apt-get; then
    echo "setup: installing with apt: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]}; run:" >&2
    echo "  sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
[[ -n "$torch_found" ]] || torch_found="from Debian libtorch-dev (just installed)"

if ! have_cmd go; then
  echo "setup: Go is missing; install Go 1.22 or newer (https://go.dev/dl) and rerun" >&2
  exit 1
fi
go mod download
echo "setup: ok (libtorch $torch_found)"
