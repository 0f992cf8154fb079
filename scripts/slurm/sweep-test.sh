#!/usr/bin/env bash
# sweep-test.sh [SWEEP.yaml]: the demo sweep as a Slurm job array on the local
# single-node cluster, end to end, with real cavforge runs:
#
#   local-cluster.sh up -> build bin/cavforge -> cavforge sweep plan ->
#   submit.sh --gpus-per-task 0 (one array element per task; task 1's first
#   attempt is made to fail) -> wait for the array -> cavforge sweep status
#   (task 1 failed, the others done) -> resubmit-failed.sh (resubmits task 1
#   alone; it now succeeds) -> status (every task done) -> resubmit-failed.sh
#   (nothing to redo) -> cavforge sweep collect -> the collected values
#   checked against each task's results.json and the demo's known verdicts
#   -> the table and timings.
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

# Task $FLAKY's first attempt fails inside cavforge (a CUDA device that does
# not exist), so that the failure is recorded by the sweep and resubmitted
# for real; the wrapper removes its marker, so the second attempt runs.
((n >= 2)) || fail "the sweep needs at least 2 tasks for the resubmit check"
FLAKY=1
flaky_mark=$WORK/fail-task-$FLAKY-once
touch "$flaky_mark"
cat >"$WORK/cavforge-flaky" <<FLAKY_EOF
#!/usr/bin/env bash
if [[ \${1:-} == sweep && \${2:-} == run && -e $flaky_mark && " \$* " == *" --task $FLAKY "* ]]; then
    rm -f $flaky_mark
    exec $bin "\$@" --device cuda:99
fi
exec $bin "\$@"
FLAKY_EOF
chmod 0755 "$WORK/cavforge-flaky"

wait_job() { # job id, what
    local deadline=$((SECONDS + JOB_TIMEOUT))
    while [[ -n $(squeue -h -j "$1" 2>/dev/null || true) ]]; do
        if ((SECONDS >= deadline)); then
            squeue -j "$1" >&2 || true
            fail "$2 $1 still queued after ${JOB_TIMEOUT}s"
        fi
        sleep 1
    done
}
states() { "$bin" sweep status "$SWEEP" --json | json 'print(" ".join(t["state"] for t in d["tasks"]))'; }

t_submit=$(now)
jobid=$(CAVFORGE_BIN=$WORK/cavforge-flaky "$HERE/submit.sh" "$SWEEP" --gpus-per-task 0 --time 30)
[[ $jobid =~ ^[0-9]+$ ]] || fail "submit.sh printed '$jobid', want a job id"
step "submitted job array $jobid (--array=0-$((n - 1)), logs in $dir/slurm-logs; task $FLAKY made to fail once)"
wait_job "$jobid" "job array"
t_array=$(since "$t_submit")
step "array finished (${t_array}s from submit)"
for ((i = 0; i < n; i++)); do
    [[ -f $dir/slurm-logs/${jobid}_$i.out ]] || fail "missing log $dir/slurm-logs/${jobid}_$i.out"
done

# --- status, a real resubmit, collect ------------------------------------------
"$bin" sweep status "$SWEEP"
got=$(states)
want=$(for ((i = 0; i < n; i++)); do if ((i == FLAKY)); then echo -n "failed "; else echo -n "done "; fi; done)
if [[ "$got " != "$want" ]]; then
    tail -n 20 "$dir"/slurm-logs/*.err >&2 || true
    fail "after the array: states '$got', want '${want% }'"
fi
[[ ! -e $flaky_mark ]] || fail "task $FLAKY never ran its failing attempt"
"$bin" sweep status "$SWEEP" --json | json "
t = d['tasks'][$FLAKY]
assert 'cuda:99' in t.get('detail', ''), 'task $FLAKY failed for another reason: %s' % t.get('detail')" ||
    fail "the failed task's status does not name the injected failure"

t=$(now)
rejob=$(CAVFORGE_BIN=$WORK/cavforge-flaky "$HERE/resubmit-failed.sh" "$SWEEP" --gpus-per-task 0 --time 30 2>"$WORK/resubmit.err") ||
    fail "resubmit-failed.sh: $(cat "$WORK/resubmit.err")"
[[ $rejob =~ ^[0-9]+$ && $rejob != "$jobid" ]] || fail "resubmit-failed.sh printed '$rejob', want a new job id"
wait_job "$rejob" "resubmitted job"
t_resubmit=$(since "$t")
logs=("$dir"/slurm-logs/"${rejob}"_*.out)
[[ ${#logs[@]} -eq 1 && -f ${logs[0]} ]] || fail "the resubmit ran ${#logs[@]} array elements, want 1 (task $FLAKY alone)"
grep -q -- "--task $FLAKY" "${logs[0]}" || fail "the resubmitted element did not run task $FLAKY: ${logs[0]}"
step "resubmitted task $FLAKY as job $rejob (${t_resubmit}s)"
got=$(states)
[[ $got != *failed* && $got != *missing* && $got != *running* ]] || fail "after the resubmit: states '$got'"
out=$("$HERE/resubmit-failed.sh" "$SWEEP" --gpus-per-task 0 2>&1)
[[ $out == *"nothing to resubmit"* ]] || fail "resubmit-failed.sh: $out"

t=$(now)
"$bin" sweep collect "$SWEEP"
t_collect=$(since "$t")
for f in collect.csv collect.json; do [[ -s $dir/$f ]] || fail "collect wrote no $f"; done
ls "$dir"/plots/*.png >/dev/null 2>&1 || fail "collect drew no plot"
rows=$(json 'print(len(d["rows"]))' <"$dir/collect.json")

# The collected values are the tasks' own, and they say what the demo shows:
# every row equals its task's results.json entry, the layer is the task's
# grid value, and striped is important for zebra while dotted is not.
python3 - "$dir" <<'PY' || fail "collected values"
import json, os, sys
d = sys.argv[1]
c = json.load(open(os.path.join(d, "collect.json")))
plan = json.load(open(os.path.join(d, "sweep.json")))
tasks = len(plan["tasks"])
seen = {}
for r in c["rows"]:
    if r["kind"] != "tcav":
        continue
    e, task = r["tcav"], r["task"]
    res = json.load(open(os.path.join(d, "tasks", str(task), "results.json")))
    own = [x for x in res["tcav"] if (x["concept"], x["target"], x["layer"]) == (e["concept"], e["target"], e["layer"])]
    assert len(own) == 1, "task %d: %d results.json entries for %s" % (task, len(own), e["concept"])
    for k in ("scores", "mean", "p_value", "significant", "direction"):
        assert own[0][k] == e[k], "task %d %s: collected %s %r, results.json %r" % (task, e["concept"], k, e[k], own[0][k])
    layers = r["values"]["tcav.layers"]
    assert [e["layer"]] == layers, "task %d: row layer %s, grid value %r" % (task, e["layer"], layers)
    seen[(task, e["concept"])] = e
for task in range(tasks):
    s, dt = seen.get((task, "striped")), seen.get((task, "dotted"))
    assert s and dt, "task %d: no striped or dotted row" % task
    assert s["significant"] and s["direction"] == "above", "task %d: striped not important for zebra: %r" % (task, s)
    assert not (dt["significant"] and dt["direction"] == "above"), "task %d: dotted important for zebra" % task
    assert all(0 <= v <= 1 for v in s["scores"]) and s["mean"] > 0.8, "task %d: striped scores %r" % (task, s["scores"])
print("sweep-test: %d collected TCAV rows equal their tasks' results; striped important, dotted not, in every task" % len(seen))
PY

# --- timings -------------------------------------------------------------------
status=$("$bin" sweep status "$SWEEP" --json)
echo
echo "timings (seconds):"
printf '  %-34s %s\n' "cluster up" "$t_cluster" "build" "$t_build" "plan" "$t_plan" \
    "array, submit to last task done" "$t_array" "resubmit of the failed task" "$t_resubmit" \
    "collect" "$t_collect" "total" "$(since "$t_all")"
json 'ts = [t["seconds"] for t in d["tasks"]]
print("  %-34s %s" % ("per task (run.Run, from manifests)", " ".join("%.1f" % s for s in ts)))
print("  %-34s %.1f" % ("sum of task times", sum(ts)))' <<<"$status"
echo "  $n tasks, $rows result rows; sweep directory $dir"

if [[ ${SWEEP_TEST_CLEANUP:-0} == 1 ]]; then rm -rf "$WORK"; fi
step "PASS"
