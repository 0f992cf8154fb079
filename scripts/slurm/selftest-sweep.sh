#!/usr/bin/env bash
# selftest-sweep.sh: submit.sh + sweep-array.sbatch + resubmit-failed.sh on the
# local cluster, against a stand-in for cavforge (a shell stub that implements
# `sweep plan`, `sweep run --task N` and `sweep status --json` with the formats
# these scripts assume).  Run as root; brings the cluster up if needed.
#
# 7 tasks, 3 per array element (elements 0-2, the last one runs only task 6);
# tasks 2 and 5 fail on their first run and task 6's result is then deleted,
# so resubmit-failed.sh must submit exactly --array=2,5-6.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JOB_TIMEOUT=${SLURM_SELFTEST_JOB_TIMEOUT:-120}
fail() { echo "selftest-sweep: FAIL: $*" >&2; exit 1; }
step() { echo "selftest-sweep: $*"; }

[[ $(id -u) -eq 0 ]] || fail "run as root"
"$HERE/local-cluster.sh" status >/dev/null 2>&1 || "$HERE/local-cluster.sh" up

WORK=$(mktemp -d /tmp/cavforge-slurm-sweeptest.XXXXXX)
chmod 0755 "$WORK"
SWEEP=$WORK/demo.yaml
printf 'base: demo.yaml\ngrid:\n  seed: [0, 1, 2, 3, 4, 5, 6]\n' >"$SWEEP"

# The stub keeps its sweep directory next to the sweep file.
cat >"$WORK/cavforge" <<'EOF'
#!/bin/bash
set -eu
[[ $1 == sweep ]] || exit 2
cmd=$2 sweep=$3
dir=${sweep%.yaml}.sweep
case $cmd in
plan)
    mkdir -p "$dir"
    echo '{"tasks": [{"seed":0},{"seed":1},{"seed":2},{"seed":3},{"seed":4},{"seed":5},{"seed":6}]}' >"$dir/sweep.json"
    echo "planned 7 tasks" >&2
    echo "$dir" ;;
run)
    [[ $4 == --task ]] || exit 2
    t=$5
    mkdir -p "$dir/tasks/$t"
    echo "$SLURM_ARRAY_JOB_ID" >>"$dir/tasks/$t/runs"
    if [[ ($t == 2 || $t == 5) && ! -e $dir/tasks/$t/failed ]]; then
        touch "$dir/tasks/$t/failed"; echo "task $t: simulated failure" >&2; exit 1
    fi
    rm -f "$dir/tasks/$t/failed"
    echo "{\"task\": $t}" >"$dir/tasks/$t/results.json"
    sleep 0.2 ;;
status)
    out= sep=
    for t in 0 1 2 3 4 5 6; do
        if [[ -e $dir/tasks/$t/results.json ]]; then s=done
        elif [[ -e $dir/tasks/$t/failed ]]; then s=failed
        else s=missing; fi
        out+="$sep{\"task\":$t,\"state\":\"$s\"}"; sep=,
    done
    echo "{\"tasks\":[$out]}" ;;
*) exit 2 ;;
esac
EOF
chmod 0755 "$WORK/cavforge"
export CAVFORGE_BIN=$WORK/cavforge

wait_gone() {
    local deadline=$((SECONDS + JOB_TIMEOUT))
    while [[ -n $(squeue -h -j "$1" 2>/dev/null || true) ]]; do
        ((SECONDS < deadline)) || fail "job $1 still queued after ${JOB_TIMEOUT}s"
        sleep 0.5
    done
}
states() { "$CAVFORGE_BIN" sweep status "$SWEEP" --json | jq -r '[.tasks[].state] | join(" ")'; }

jobid=$("$HERE/submit.sh" "$SWEEP" --gpus-per-task 0 --tasks-per-element 3 --max-parallel 2 --time 5 --mem 64M)
[[ $jobid =~ ^[0-9]+$ ]] || fail "submit.sh printed '$jobid', want a job id"
step "submitted $jobid"
wait_gone "$jobid"
logs=$WORK/demo.sweep/slurm-logs
for e in 0 1 2; do [[ -f $logs/${jobid}_$e.out ]] || fail "missing $logs/${jobid}_$e.out"; done
[[ ! -e $logs/${jobid}_3.out ]] || fail "element 3 should not exist (7 tasks / 3 per element)"
grep -q 'tasks 6..6' "$logs/${jobid}_2.out" || fail "element 2 should run only task 6"
got=$(states)
[[ $got == "done done failed done done failed done" ]] || fail "after first run: $got"
step "first run: $got"

rm "$WORK/demo.sweep/tasks/6/results.json" # now "missing"
dry=$("$HERE/resubmit-failed.sh" "$SWEEP" --gpus-per-task 0 --dry-run)
[[ $dry == *--array=2,5-6\ * ]] || fail "resubmit would run: $dry"
jobid=$("$HERE/resubmit-failed.sh" "$SWEEP" --gpus-per-task 0 --time 5 --mem 64M)
step "resubmitted $jobid"
wait_gone "$jobid"
got=$(states)
[[ $got == "done done done done done done done" ]] || fail "after resubmit: $got"
[[ $(wc -l <"$WORK/demo.sweep/tasks/0/runs") -eq 1 ]] || fail "task 0 ran again"
out=$("$HERE/resubmit-failed.sh" "$SWEEP" --gpus-per-task 0 2>&1)
[[ $out == *"nothing to resubmit"* ]] || fail "expected nothing to resubmit, got: $out"

rm -rf "$WORK"
step "PASS"
