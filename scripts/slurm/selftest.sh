#!/usr/bin/env bash
# selftest.sh: prove the local Slurm cluster runs job arrays (no cavforge needed).
#
#   up, up again (idempotent) -> 4-element array, at most 2 at a time, each
#   element writes its SLURM_ARRAY_TASK_ID to a file and sleeps 1s -> poll
#   squeue until the job is gone -> check the 4 files -> down -> up again ->
#   one more tiny job.  Exit status is non-zero on any failure.
#
# Must run as root (it starts the daemons).  SLURM_SELFTEST_DOWN=1 stops the
# cluster at the end; by default it is left up.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER=$HERE/local-cluster.sh
JOB_TIMEOUT=${SLURM_SELFTEST_JOB_TIMEOUT:-120}

fail() { echo "selftest: FAIL: $*" >&2; exit 1; }
step() { echo "selftest: $*"; }
# elapsed T0: seconds since T0 (an $EPOCHREALTIME value), 1 decimal.
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

[[ $(id -u) -eq 0 ]] || fail "run as root (local-cluster.sh up starts daemons)"

WORK=$(mktemp -d /tmp/cavforge-slurm-selftest.XXXXXX)
chmod 0755 "$WORK"

t=$EPOCHREALTIME
"$CLUSTER" up
step "up took $(elapsed "$t")s"
"$CLUSTER" up >/dev/null || fail "second 'up' failed"
"$CLUSTER" status >/dev/null || fail "status not ok after up"

cat >"$WORK/job.sh" <<'EOF'
#!/bin/bash
echo "$SLURM_ARRAY_TASK_ID" >"$SELFTEST_DIR/task.$SLURM_ARRAY_TASK_ID"
sleep 1
EOF
chmod 0755 "$WORK/job.sh"

# wait_gone JOBID: poll squeue until no element of the job is left.  Also
# checks the %2 limit: never more than 2 elements RUNNING at one poll.
wait_gone() {
    local id=$1 deadline=$((SECONDS + JOB_TIMEOUT)) out running
    while :; do
        # squeue fails with "Invalid job id" once the job has aged out: gone.
        out=$(squeue -h -j "$id" -o '%i %T' 2>/dev/null) || out=""
        [[ -z $out ]] && return 0
        running=$(grep -c ' RUNNING$' <<<"$out" || true)
        ((running <= 2)) || fail "job $id: $running elements running at once (limit 2)"
        ((SECONDS < deadline)) || { squeue -j "$id" >&2 || true; fail "job $id still queued after ${JOB_TIMEOUT}s"; }
        sleep 0.5
    done
}

t=$EPOCHREALTIME
jobid=$(SELFTEST_DIR=$WORK sbatch --parsable --array=0-3%2 --job-name=cavforge-selftest \
    --output="$WORK/%A_%a.out" --error="$WORK/%A_%a.err" --time=5 --mem=64M "$WORK/job.sh")
jobid=${jobid%%;*}
step "submitted array job $jobid"
wait_gone "$jobid"
step "4-element array (0-3%2) finished in $(elapsed "$t")s"

for i in 0 1 2 3; do
    [[ -f $WORK/task.$i ]] || fail "missing $WORK/task.$i (see $WORK/${jobid}_$i.err)"
    [[ $(<"$WORK/task.$i") == "$i" ]] || fail "$WORK/task.$i holds '$(<"$WORK/task.$i")', want $i"
    [[ -f $WORK/${jobid}_$i.out ]] || fail "missing log $WORK/${jobid}_$i.out (%A_%a naming)"
done
step "all 4 task files present"

"$CLUSTER" down
if "$CLUSTER" status >/dev/null 2>&1; then fail "status ok after down"; fi
t=$EPOCHREALTIME
"$CLUSTER" up
step "re-up took $(elapsed "$t")s"

jobid=$(SELFTEST_DIR=$WORK sbatch --parsable --array=7 --output="$WORK/%A_%a.out" --time=5 --mem=64M "$WORK/job.sh")
jobid=${jobid%%;*}
wait_gone "$jobid"
[[ -f $WORK/task.7 ]] || fail "job after down/up did not run"
step "job after down/up ran (submit to gone: $(elapsed "$t")s after re-up started)"

if [[ ${SLURM_SELFTEST_DOWN:-0} == 1 ]]; then "$CLUSTER" down; fi
rm -rf "$WORK"
step "PASS"
