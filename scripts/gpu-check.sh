#!/usr/bin/env bash
# GPU check: does cavforge build, test and run fast against the PyTorch that a
# GPU node has? Runs everything on the CPU, and says so, where CUDA is missing.
#
#   bash scripts/gpu-check.sh             # the check (make gpu-check)
#   bash scripts/gpu-check.sh --prepare   # on a dev machine with Go, before
#                                         # copying the tree to a node without Go
#
# A GPU node typically has a CUDA PyTorch wheel (python3 -c 'import torch'),
# cmake and g++, but no Go toolchain and no network. What makes that work:
#
#  * bin/cavforge (built anywhere with `make build`) needs only the project's
#    own libcavshim.so and libcgotorch.so, not libtorch: it calls nothing but
#    their C functions, and the linker drops the -lc10 -ltorch -ltorch_cpu
#    that gotorch's cgo LDFLAGS ask for (gcc on Debian and Ubuntu links with
#    --as-needed). So the native libraries are rebuilt here with cmake against
#    the node's PyTorch (its own C++ ABI, its CUDA) into build/gpu-check/, and
#    the prebuilt binary picks them up through LD_LIBRARY_PATH. If a binary
#    does name versioned libtorch sonames (libc10.so.1.13, ...), a directory
#    of compatibility links to PyTorch's libraries is put first instead.
#  * libcgotorch is compiled from gotorch's C++ sources, which live in the Go
#    module cache. --prepare copies them to bin/gpu-kit/gotorch/, together
#    with compiled Go test binaries (bin/gpu-kit/tests/) of every package that
#    uses libtorch, so that the node runs the tests without Go. Carry bin/.
#  * With Go and a module cache on the node, cavforge and the tests are
#    rebuilt from source instead (the Makefile's own link flags; `make build`
#    itself runs scripts/setup.sh, which wants apt and the network).
#
# Environment: BENCH_SECONDS (default 2) per batch size and side;
# GPU_CHECK_PYTHON (a python with torch); GPU_CHECK_BUILD (default
# build/gpu-check); GPU_CHECK_BUDGET (seconds, default 450): past it the
# remaining benchmarks are skipped. Torch_DIR/CMAKE_PREFIX_PATH win over the
# python's libtorch, as in the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KIT=bin/gpu-kit
GB="${GPU_CHECK_BUILD:-build/gpu-check}"
SECS="${BENCH_SECONDS:-2}"
BUDGET="${GPU_CHECK_BUDGET:-450}"
MODPATH=github.com/cavforge/cavforge
GOTORCH=github.com/wangkuiyi/gotorch
JOBS=$(nproc)

section() { printf '\n=== %s  [%ds] ===\n' "$*" "$SECONDS"; }
have() { command -v "$1" >/dev/null 2>&1; }
problems=()
problem() { problems+=("$*"); echo "PROBLEM: $*"; }

# Packages of this module that use libtorch (cgo/torch, or depend on it,
# tests included) and have tests. Needs go.
libtorch_packages() {
  go list -f '{{.ImportPath}} {{len .TestGoFiles}}{{len .XTestGoFiles}}{{range .Deps}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}' ./... |
    awk -v t="$MODPATH/cgo/torch" '$2 != "00" { for (i = 1; i <= NF; i++) if ($i == t) { print $1; next } }'
}

# ---------------------------------------------------------------------------
if [[ "${1:-}" == "--prepare" ]]; then
  section "prepare: a kit for a node without Go"
  have go || { echo "gpu-check --prepare needs Go" >&2; exit 1; }
  make build
  rm -rf "$KIT"
  mkdir -p "$KIT/gotorch/cgotorch" "$KIT/tests"
  gtdir=$(go list -m -f '{{.Dir}}' "$GOTORCH")
  cp "$gtdir"/cgotorch/*.cc "$gtdir"/cgotorch/*.h "$KIT/gotorch/cgotorch/"
  echo "gotorch C++ sources: $gtdir/cgotorch -> $KIT/gotorch/cgotorch"
  torchlib=$(cat build/torch-libdir.txt)
  export CGO_LDFLAGS="-L$ROOT/build/lib -Wl,-rpath,$ROOT/build/lib -L$torchlib -Wl,-rpath,$torchlib"
  : >"$KIT/tests.txt"
  for pkg in $(libtorch_packages); do
    rel=${pkg#"$MODPATH"}; rel=${rel#/}; rel=${rel:-.}
    name=$(echo "$rel" | tr '/' '_').test
    go test -c -ldflags="-s -w" -o "$KIT/tests/$name" "./$rel"
    echo "$name $rel" >>"$KIT/tests.txt"
    echo "test binary: $KIT/tests/$name ($pkg)"
  done
  { echo "built $(date -u +%FT%TZ) on $(uname -n) by $(go version)"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (plus uncommitted changes)')"
    bin/cavforge version | sed -n 's/^libtorch/against libtorch/p'; } >"$KIT/info.txt"
  cat "$KIT/info.txt"
  echo "bin/cavforge NEEDED: $(readelf -d bin/cavforge | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
  echo "prepared: copy the working tree with bin/ (bin/cavforge, $KIT) and run scripts/gpu-check.sh there"
  exit 0
fi

# ---------------------------------------------------------------------------
section "machine"
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)
echo "host:  $(uname -n), $(uname -sm), $JOBS CPUs, ${cpu_model:-unknown CPU}"
if have nvidia-smi; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu:   /' || echo "gpu:   nvidia-smi failed"
else
  echo "gpu:   no nvidia-smi"
fi

# ---------------------------------------------------------------------------
section "PyTorch"
PY="" PYINFO="" CUDA=0
probe='
import sys, os, torch
p = torch.utils.cmake_prefix_path
cfg = os.path.isfile(os.path.join(p, "Torch", "TorchConfig.cmake"))
cuda = torch.cuda.is_available()
try:
    import torchvision; tv = torchvision.__version__
except Exception:
    tv = ""
print("python", sys.executable, sys.version.split()[0])
print("torch", torch.__version__)
print("cuda_build", torch.version.cuda or "")
print("cuda", int(cuda))
print("gpus", "; ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else "")
print("cudnn", torch.backends.cudnn.version() if cuda else "")
print("bf16", int(cuda and torch.cuda.is_bf16_supported()))
print("cxx11abi", int(torch._C._GLIBCXX_USE_CXX11_ABI))
print("cmake_prefix", p if cfg else "")
print("libdir", os.path.join(os.path.dirname(torch.__file__), "lib"))
print("torchvision", tv)
'
field() { sed -n "s/^$1 //p" <<<"$PYINFO" | head -n1; }
best="" best_rank=-1
for py in ${GPU_CHECK_PYTHON:-} python3 /opt/torch/.venv/bin/python3 /usr/bin/python3 python; do
  have "$py" || continue
  info=$(timeout 120 "$py" -c "$probe" 2>/dev/null) || continue
  # Prefer CUDA, then a libtorch that cmake can use.
  rank=0
  [[ -n $(sed -n 's/^cmake_prefix //p' <<<"$info") ]] && rank=$((rank + 1))
  [[ $(sed -n 's/^cuda //p' <<<"$info") == 1 ]] && rank=$((rank + 2))
  if ((rank > best_rank)); then best=$py best_rank=$rank PYINFO=$info; fi
  if ((rank == 3)); then break; fi
done
if [[ -z "$best" ]]; then
  echo "no python with torch found (tried ${GPU_CHECK_PYTHON:-} python3 /opt/torch/.venv/bin/python3 /usr/bin/python3 python)"
  echo "the native build falls back to CMake's own libtorch discovery (Debian's libtorch-dev, CPU)"
else
  PY=$best
  echo "python:      $(field python)"
  echo "torch:       $(field torch) (C++11 ABI: $(field cxx11abi))"
  echo "CUDA build:  $(field cuda_build | grep . || echo none)"
  echo "torchvision: $(field torchvision | grep . || echo none)"
  echo "libtorch:    $(field cmake_prefix | grep . || echo 'no TorchConfig.cmake in this PyTorch: CMake looks elsewhere (Torch_DIR, Debian libtorch-dev)')"
  if [[ $(field cuda) == 1 ]]; then
    CUDA=1
    echo "GPUs:        $(field gpus) (cuDNN $(field cudnn), bf16 $( [[ $(field bf16) == 1 ]] && echo yes || echo no))"
  fi
fi
if ((CUDA)); then
  echo "CUDA is available: cavforge is checked on cpu and cuda."
else
  echo "CUDA is NOT available here$( [[ -n "$PY" && -z $(field cuda_build) ]] && echo " (this torch is a CPU build)"): everything below runs on the CPU only."
fi

# ---------------------------------------------------------------------------
section "tools"
if [[ -d /usr/local/cuda/bin && ":$PATH:" != *":/usr/local/cuda/bin:"* ]]; then PATH="$PATH:/usr/local/cuda/bin"; fi
if [[ -n "$PY" ]]; then PATH="$PATH:$(dirname "$(field python | cut -d' ' -f1)")"; fi  # pip's cmake
CXX_BIN=""
for c in ${CXX:-} c++ g++ clang++; do have "$c" && { CXX_BIN=$(command -v "$c"); break; }; done
GO_OK=0
for t in cmake make go nvcc readelf nm patchelf; do
  printf '%-9s %s\n' "$t" "$(command -v $t || echo missing)"
done
printf '%-9s %s\n' "c++" "${CXX_BIN:-missing}"
if have go; then
  # No network on a node: use the module cache as it is, never download.
  if GOFLAGS=-mod=mod GOPROXY=off go list -m -f '{{.Dir}}' "$GOTORCH" >/dev/null 2>&1 &&
     [[ -d "$(GOFLAGS=-mod=mod GOPROXY=off go list -m -f '{{.Dir}}' "$GOTORCH")/cgotorch" ]]; then
    GO_OK=1
    echo "go: $(go version), modules in the cache: cavforge and its tests are rebuilt from source"
  else
    echo "go: $(go version), but the Go modules are not in the module cache (and no network): using the prebuilt bin/cavforge"
  fi
else
  echo "go: missing: using the prebuilt bin/cavforge$( [[ -f $KIT/tests.txt ]] && echo " and the prebuilt test binaries in $KIT")"
fi

# ---------------------------------------------------------------------------
section "native libraries against this libtorch ($GB)"
NATIVE_OK=0
TORCH_LIBDIR=""
if [[ $GO_OK == 1 ]]; then
  GOTORCH_DIR=$(GOFLAGS=-mod=mod GOPROXY=off go list -m -f '{{.Dir}}' "$GOTORCH")
elif [[ -d "$KIT/gotorch/cgotorch" ]]; then
  GOTORCH_DIR=$ROOT/$KIT/gotorch
else
  GOTORCH_DIR=""
fi
if ! have cmake; then
  problem "cmake is missing: cannot rebuild libcavshim/libcgotorch (pip install cmake, or apt-get install cmake)"
elif [[ -z "$CXX_BIN" ]]; then
  problem "no C++ compiler (g++/c++): cannot rebuild libcavshim/libcgotorch"
elif [[ -z "$GOTORCH_DIR" ]]; then
  problem "gotorch's C++ sources are not here: no Go module cache and no $KIT (run 'scripts/gpu-check.sh --prepare' where Go is, then copy bin/ along)"
else
  args=(-S . -B "$GB" -DGOTORCH_DIR="$GOTORCH_DIR" -DCMAKE_CXX_COMPILER="$CXX_BIN")
  want_prefix=""
  if [[ -z "${Torch_DIR:-}${CMAKE_PREFIX_PATH:-}" && -n "$PY" && -n $(field cmake_prefix) ]]; then
    want_prefix=$(field cmake_prefix)
    args+=(-DCMAKE_PREFIX_PATH="$want_prefix")
  fi
  # A build dir from another tree or another libtorch is started afresh.
  stamp="$ROOT|$want_prefix|${Torch_DIR:-}|${CMAKE_PREFIX_PATH:-}|$CXX_BIN"
  if [[ -f "$GB/CMakeCache.txt" && "$(cat "$GB/gpu-check.stamp" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$GB"
  fi
  mkdir -p "$GB"
  echo "$stamp" >"$GB/gpu-check.stamp"
  echo "gotorch sources: $GOTORCH_DIR"
  log="$GB/native.log"
  # Keep going past a failing target, so that the log shows every error.
  keep=(-- -k)
  if timeout 300 cmake "${args[@]}" >"$log" 2>&1 &&
     { grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$GB/CMakeCache.txt" && keep=(-- -k 0) || true; } &&
     timeout 420 cmake --build "$GB" -j"$JOBS" --target cavshim cgotorch bench_baseline "${keep[@]}" >>"$log" 2>&1; then
    NATIVE_OK=1
    grep -E '^-- (libtorch from|Torch |CUDA support)' "$log" | cut -c1-220 || true
    TORCH_LIBDIR=$(cat "$GB/torch-libdir.txt")
    echo "built: $GB/lib/libcavshim.so $GB/lib/libcgotorch.so $GB/bin/bench_baseline (log: $log)"
    if have readelf; then
      for f in "$GB"/lib/libcavshim.so "$GB"/lib/libcgotorch.so; do
        echo "  $(basename "$f") NEEDED: $(readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
      done
    fi
  else
    problem "native build failed (log: $log); its end:"
    grep -E ': error|CMake Error|undefined reference' "$log" | sort -u | head -n 20 || true
    echo "..."
    tail -n 12 "$log"
  fi
fi

# ---------------------------------------------------------------------------
section "cavforge binary"
CF="" LIBPATH=""
if ((NATIVE_OK)); then
  LIBPATH="$ROOT/$GB/lib"
  if [[ $GO_OK == 1 ]]; then
    # The Makefile's link flags, pointed at this build; the result goes to
    # $GB/bin so that the tree's own bin/cavforge stays as it was.
    export CGO_LDFLAGS="-L$ROOT/$GB/lib -Wl,-rpath,$ROOT/$GB/lib -L$TORCH_LIBDIR -Wl,-rpath,$TORCH_LIBDIR"
    if GOFLAGS=-mod=mod GOPROXY=off timeout 300 go build -o "$GB/bin/cavforge" ./cmd/cavforge; then
      CF="$ROOT/$GB/bin/cavforge"
      echo "rebuilt with go: $CF"
    else
      problem "go build failed"
    fi
  elif [[ -x bin/cavforge ]]; then
    CF="$ROOT/bin/cavforge"
    echo "prebuilt: $CF$( [[ -f $KIT/info.txt ]] && echo " ($(head -n1 "$KIT/info.txt"))")"
  else
    problem "no Go and no prebuilt bin/cavforge: build it elsewhere with 'make build' and copy bin/ along"
  fi
fi
if [[ -n "$CF" ]]; then
  if have readelf; then
    echo "NEEDED: $(readelf -d "$CF" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
  fi
  if have nm; then
    echo "undefined C++ symbols in the binary: $(nm -D --undefined-only "$CF" | grep -c ' _Z' || true) (the Go side calls only the C ABI of libcavshim/libcgotorch)"
  fi
  # A binary linked without --as-needed names libtorch's versioned sonames
  # (e.g. libc10.so.1.13 from Debian): link those names to this PyTorch's
  # libraries. Safe because the binary itself uses no libtorch symbol.
  missing=$(LD_LIBRARY_PATH="$LIBPATH" ldd "$CF" 2>/dev/null | awk '/=> not found/ {print $1}')
  if [[ -n "$missing" ]]; then
    compat="$ROOT/$GB/compat"
    rm -rf "$compat"; mkdir -p "$compat"
    for so in $missing; do
      base=${so%%.so*}.so
      if [[ -n "$TORCH_LIBDIR" && -e "$TORCH_LIBDIR/$base" ]]; then
        ln -sf "$TORCH_LIBDIR/$base" "$compat/$so"
        echo "compat link: $so -> $TORCH_LIBDIR/$base"
      else
        problem "$CF needs $so, which neither $GB/lib nor $TORCH_LIBDIR provides"
      fi
    done
    LIBPATH="$compat:$LIBPATH"
  fi
  cf() { LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$CF" "$@"; }
  echo "run with LD_LIBRARY_PATH=$LIBPATH"
  if ! cf version; then
    problem "cavforge version failed"
    LD_LIBRARY_PATH="$LIBPATH" ldd "$CF" | grep -E 'not found|cavshim|cgotorch|torch|c10' || true
    CF=""
  fi
fi

# ---------------------------------------------------------------------------
section "Go tests that use libtorch (CAVFORGE_DEVICE=$( ((CUDA)) && echo cuda || echo cpu))"
export CAVFORGE_DEVICE=$( ((CUDA)) && echo cuda || echo cpu)
if [[ -z "$CF" ]]; then
  echo "skipped: no working cavforge build (see above)"
elif [[ $GO_OK == 1 ]]; then
  pkgs=$(GOFLAGS=-mod=mod GOPROXY=off libtorch_packages | sed "s|^$MODPATH|.|")
  echo "packages: $(echo $pkgs)"
  if ! LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" GOFLAGS=-mod=mod GOPROXY=off \
       timeout 300 go test -count=1 $pkgs; then
    problem "go test failed"
  fi
elif [[ -f "$KIT/tests.txt" ]]; then
  echo "prebuilt test binaries from $KIT ($(head -n1 "$KIT/info.txt" 2>/dev/null))"
  while read -r name rel; do
    [[ -n "$name" ]] || continue
    echo "--- $rel"
    if ! (cd "$rel" && LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
          timeout 300 "$ROOT/$KIT/tests/$name" -test.count=1 -test.timeout=280s); then
      problem "tests of $rel failed"
    fi
  done <"$KIT/tests.txt"
else
  echo "skipped: no Go toolchain here and no prebuilt test binaries ($KIT/tests.txt; make them with 'scripts/gpu-check.sh --prepare' where Go is)"
fi

# ---------------------------------------------------------------------------
section "throughput: cavforge vs plain C++ loop (--seconds $SECS)"
if [[ -z "$CF" ]]; then
  echo "skipped: no working cavforge build (see above)"
else
  baseline="$ROOT/$GB/bin/bench_baseline"
  googlenet=""
  if [[ -n "$PY" && -n $(field torchvision) ]]; then
    googlenet="$GB/models/googlenet.pt"
    if [[ ! -f "$googlenet" ]]; then
      echo "exporting GoogLeNet (random weights) with $PY"
      if ! timeout 300 "$PY" scripts/export_torchvision.py --model googlenet --mode trace --size 224 --out "$googlenet" >"$GB/export.log" 2>&1; then
        problem "GoogLeNet export failed:"; tail -n 15 "$GB/export.log"; googlenet=""
      fi
    fi
  elif [[ -f build/models/googlenet.pt ]]; then
    googlenet=build/models/googlenet.pt
    echo "no torchvision with this python: using the existing $googlenet"
  else
    echo "no torchvision with this python: GoogLeNet skipped"
  fi
  # A depthwise network: MobileNetV2 (random weights), traced.
  mobilenet=""
  if [[ -n "$PY" && -n $(field torchvision) ]]; then
    mobilenet="$GB/models/mobilenet_v2.pt"
    if [[ ! -f "$mobilenet" ]] && ! timeout 300 "$PY" scripts/export_torchvision.py --model mobilenet_v2 --mode trace --size 224 --out "$mobilenet" >"$GB/export-mobilenet.log" 2>&1; then
      problem "MobileNetV2 export failed:"; tail -n 15 "$GB/export-mobilenet.log"; mobilenet=""
    fi
  elif [[ -f build/models/mobilenet_v2.pt ]]; then
    mobilenet=build/models/mobilenet_v2.pt
  fi
  runs=("cpu fp32")
  if ((CUDA)); then
    runs+=("cuda fp32")
    if [[ $(field bf16) == 1 ]]; then runs+=("cuda bf16"); fi
    runs+=("cuda fp16")
  else
    echo "(CPU only: CUDA is not available)"
  fi
  bench() {  # MODEL LAYER C,H,W DEVICE PRECISION
    local batches=1,2,8
    if [[ $4 == cuda* ]]; then batches=16,64,256; fi
    if ((SECONDS > BUDGET)); then
      echo "skipped $1 on $4 $5: past the time budget (${BUDGET}s)"; return
    fi
    echo
    # libtorch may warn on every pass (deprecations): fold repeats after the table.
    local err="$GB/bench.stderr"
    if ! cf bench "$1" --layer "$2" --input "$3" --batches "$batches" --seconds "$SECS" --rounds 3 \
         --passes act,grad,pgd --device "$4" --precision "$5" --baseline "$baseline" 2>"$err"; then
      problem "bench $1 on $4 $5 failed"
    fi
    if [[ -s "$err" ]]; then
      echo "stderr, repeats folded:"
      sed -E 's/^\[W[0-9]+ [0-9:.]+ /[W /' "$err" | sort | uniq -c | sort -rn | head -n 8 | cut -c1-300
    fi
  }
  for r in "${runs[@]}"; do
    set -- $r
    if [[ -n "$googlenet" ]]; then bench "$googlenet" inception4c 3,224,224 "$1" "$2"; fi
    if [[ -n "$mobilenet" ]]; then bench "$mobilenet" features.12 3,224,224 "$1" "$2"; fi
    if [[ $2 == fp32 ]]; then bench testdata/demo/model.pt block3 3,64,64 "$1" "$2"; fi
  done
  echo
  echo "floor÷cavforge > 1: cavforge slower than the C++ floor (same libtorch, same device; timed in fp32 only)."
  # PyTorch eager on the same card, for the >= 1.0x eager target: the
  # torchvision model itself, full forward with a hook at the layer (as
  # hook-based tools run it), no_grad, fp32.
  if ((CUDA)) && [[ -n "$PY" && -n $(field torchvision) ]]; then
    for ml in "googlenet inception4c" "mobilenet_v2 features.12"; do
      set -- $ml
      if ((SECONDS > BUDGET)); then echo "skipped eager $1: past the time budget"; continue; fi
      "$PY" - "$1" "$2" "$SECS" <<'PY' || problem "eager PyTorch bench of $1 failed"
import sys, time, torch, torchvision
name, layer, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
m = getattr(torchvision.models, name)(weights=None, **kw).cuda().eval()
acts = []
dict(m.named_modules())[layer].register_forward_hook(lambda mod, i, o: acts.append(o))
for b in (16, 64, 256):
    x = torch.rand(b, 3, 224, 224, device="cuda")
    def run():
        acts.clear()
        with torch.no_grad():
            m(x)
        acts[0].cpu()
    for _ in range(3): run()
    torch.cuda.synchronize(); t = time.time(); n = 0
    while time.time() - t < secs: run(); n += 1
    torch.cuda.synchronize()
    print(f"PyTorch eager {name} @ {layer}, batch {b}: {b*n/(time.time()-t):.1f} img/s (full forward + hook, no_grad)")
PY
    done
  fi
fi

# ---------------------------------------------------------------------------
section "summary"
echo "torch $( [[ -n "$PY" ]] && field torch || echo none), CUDA $( ((CUDA)) && echo "yes ($(field gpus))" || echo "no: CPU only")"
echo "native: $( ((NATIVE_OK)) && echo "rebuilt against $TORCH_LIBDIR" || echo FAILED); cavforge: ${CF:-none}"
if ((${#problems[@]})); then
  printf 'problem: %s\n' "${problems[@]}"
  exit 1
fi
echo "gpu-check: ok"
