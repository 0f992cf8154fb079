#!/usr/bin/env bash
# sweep-test.sh [SWEEP.yaml]: the demo sweep as a Slurm job array on the local
# single-node cluster, end to end, with real cavforge runs:
#
#   local-cluster.sh up -> build bin/cavforge -> cavforge sweep plan ->
#   submit.sh --gpus-per-task 0 (one array element per task) -> wait for the
#   array -> cavforge sweep status (every task done) -> resubmit-failed.sh
#   (nothing to redo) -> cavforge sweep collect -> the table and timings.
#
# SWEEP.yaml defaults to configs/sweep-demo.yaml. It runs on a private copy
# whose base is made absolute and whose out: is a fresh temporary directory, so
# nothing under runs/ is touched and every task really runs (the base config's
# cache_dir is still used).  Run as root (the cluster's daemons); exit status
# non-zero on any failure.
#
# Environment:
#   CAVFORGE_BIN             cavforge binary (default: bin/cavforge, built with make)
#   SWEEP_TEST_JOB_TIMEOUT   seconds to wait for the array (default 900)
#   SWEEP_TEST_CLEANUP=1     remove the sweep directory at the end (default: keep)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SRC=${1:-$ROOT/configs/sweep-demo.yaml}
JOB_TIMEOUT=${SWEEP_TEST_JOB_TIMEOUT:-900}

fail() { echo "sweep-test: FAIL: $*" >&2; exit 1; }
step() { echo "sweep-test: $*"; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
json() { python3 -c "import json, sys; d = json.load(sys.stdin); $1"; }

[[ -f $SRC ]] || fail "sweep file not found: $SRC"
command -v python3 >/dev/null || fail "needs python3 (to read JSON)"
t_all=$(now)

# --- cluster ---------------------------------------------------------------
t=$(now)
if ! "$HERE/local-cluster.sh" status >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || fail "the local cluster is down; run as root to bring it up"
    "$HERE/local-cluster.sh" up
fi
t_cluster=$(since "$t")
step "cluster up (${t_cluster}s)"

# --- binary ----------------------------------------------------------------
t=$(now)
if [[ -n ${CAVFORGE_BIN:-} ]]; then
    bin=$CAVFORGE_BIN
else
    make -s -C "$ROOT" build >/dev/null
    bin=$ROOT/bin/cavforge
fi
[[ -x $bin ]] || fail "no cavforge binary at $bin"
export CAVFORGE_BIN=$bin
t_build=$(since "$t")
step "binary $bin (${t_build}s)"

# --- a private copy of the sweep -----------------------------------------------
WORK=$(mktemp -d /tmp/cavforge-sweep-test.XXXXXX)
chmod 0755 "$WORK"
base=$(sed -n 's/^base:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$SRC")
[[ -n $base ]] || fail "no base: line in $SRC"
[[ $base == /* ]] || base=$(cd "$(dirname "$SRC")" && pwd)/$base
SWEEP=$WORK/$(basename "$SRC")
sed -e '/^out:/d' -e "s|^base:.*|base: $base|" "$SRC" >"$SWEEP"
echo "out: $WORK/sweep" >>"$SWEEP"

# --- plan and submit ---------------------------------------------------------
t=$(now)
dir=$("$bin" sweep plan "$SWEEP")
[[ $dir == "$WORK/sweep" ]] || fail "sweep plan printed '$dir', want $WORK/sweep"
n=$(json 'print(len(d["tasks"]))' <"$dir/sweep.json")
t_plan=$(since "$t")
step "planned $n tasks into $dir (${t_plan}s)"

t_submit=$(now)
jobid=$("$HERE/submit.sh" "$SWEEP" --gpus-per-task 0 --time 30)
[[ $jobid =~ ^[0-9]+$ ]] || fail "submit.sh printed '$jobid', want a job id"
step "submitted job array $jobid (--array=0-$((n - 1)), logs in $dir/slurm-logs)"

deadline=$((SECONDS + JOB_TIMEOUT))
while [[ -n $(squeue -h -j "$jobid" 2>/dev/null || true) ]]; do
    if ((SECONDS >= deadline)); then
        squeue -j "$jobid" >&2 || true
        fail "job $jobid still queued after ${JOB_TIMEOUT}s"
    fi
    sleep 1
done
t_array=$(since "$t_submit")
step "array finished (${t_array}s from submit)"
for ((i = 0; i < n; i++)); do
    [[ -f $dir/slurm-logs/${jobid}_$i.out ]] || fail "missing log $dir/slurm-logs/${jobid}_$i.out"
done

# --- status, resubmit, collect -------------------------------------------------
"$bin" sweep status "$SWEEP"
status=$("$bin" sweep status "$SWEEP" --json)
states=$(json 'print(" ".join(t["state"] for t in d["tasks"]))' <<<"$status")
if [[ $states != *done* || $states =~ (failed|missing|running) ]]; then
    tail -n 20 "$dir"/slurm-logs/*.err >&2 || true
    fail "not every task is done: $states"
fi
out=$("$HERE/resubmit-failed.sh" "$SWEEP" --gpus-per-task 0 2>&1)
[[ $out == *"nothing to resubmit"* ]] || fail "resubmit-failed.sh: $out"

t=$(now)
"$bin" sweep collect "$SWEEP"
t_collect=$(since "$t")
for f in collect.csv collect.json; do [[ -s $dir/$f ]] || fail "collect wrote no $f"; done
ls "$dir"/plots/*.png >/dev/null 2>&1 || fail "collect drew no plot"
rows=$(json 'print(len(d["rows"]))' <"$dir/collect.json")

# --- timings -------------------------------------------------------------------
echo
echo "timings (seconds):"
printf '  %-34s %s\n' "cluster up" "$t_cluster" "build" "$t_build" "plan" "$t_plan" \
    "array, submit to last task done" "$t_array" "collect" "$t_collect" "total" "$(since "$t_all")"
json 'ts = [t["seconds"] for t in d["tasks"]]
print("  %-34s %s" % ("per task (run.Run, from manifests)", " ".join("%.1f" % s for s in ts)))
print("  %-34s %.1f" % ("sum of task times", sum(ts)))' <<<"$status"
echo "  $n tasks, $rows result rows; sweep directory $dir"

if [[ ${SWEEP_TEST_CLEANUP:-0} == 1 ]]; then rm -rf "$WORK"; fi
step "PASS"
