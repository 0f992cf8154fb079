#!/usr/bin/env bash
# resubmit-failed.sh SWEEP.yaml [--force] [submit.sh options...]
#
# Runs `cavforge sweep status SWEEP.yaml --json` and resubmits only the tasks
# whose state is "failed" or "missing", via submit.sh --only.  Other options
# (--partition, --time, --gpus-per-task, --max-parallel, ...) go to submit.sh.
# Prints the new job id, or nothing (exit 0) when there is nothing to redo.
#
# A task still waiting in the queue has no results yet and shows as "missing",
# so this refuses to run while jobs named like this sweep's are queued or
# running (squeue); --force skips that check.
#
# Assumed status format: {"tasks":[{"task":0,"state":"done|failed|missing|running"},...]}
#
# Environment: CAVFORGE_BIN (default: cavforge on PATH), plus submit.sh's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "resubmit-failed: error: $*" >&2; exit 1; }
info() { echo "resubmit-failed: $*" >&2; }

[[ $# -ge 1 && $1 != -* ]] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
SWEEP=$1
shift
[[ -f $SWEEP ]] || die "sweep file not found: $SWEEP"

force=0 job_name=
pass=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --force) force=1 ;;
        --only | --only=*) die "--only is computed from the sweep status" ;;
        --job-name) job_name=${2:-}; pass+=("$1" "${2:-}"); shift ;;
        --job-name=*) job_name=${1#*=}; pass+=("$1") ;;
        *) pass+=("$1") ;;
    esac
    shift
done
[[ -n $job_name ]] || job_name=cavforge-$(basename "${SWEEP%.*}") # same default as submit.sh

bin=${CAVFORGE_BIN:-cavforge}
status=$("$bin" sweep status "$SWEEP" --json) || die "'$bin sweep status $SWEEP --json' failed"

# Prints "<ids to redo, comma separated> <number running>".
if command -v jq >/dev/null 2>&1; then
    parsed=$(jq -r '[.tasks[] | select(.state == "failed" or .state == "missing") | .task | tostring] as $r
        | "\($r | join(",")) \([.tasks[] | select(.state == "running")] | length)"' <<<"$status")
elif command -v python3 >/dev/null 2>&1; then
    parsed=$(python3 -c '
import json, sys
t = json.load(sys.stdin)["tasks"]
redo = [str(x["task"]) for x in t if x["state"] in ("failed", "missing")]
print(",".join(redo), sum(1 for x in t if x["state"] == "running"))' <<<"$status")
else
    die "need jq or python3 to read the status"
fi
[[ -n $parsed ]] || die "could not read the status JSON"
# A leading space means no ids.
redo=${parsed% *}
running=${parsed##* }

((running == 0)) || info "$running task(s) report running; not resubmitted"
if [[ -z ${redo// /} ]]; then
    info "nothing to resubmit: no failed or missing tasks"
    exit 0
fi

if ((!force)) && command -v squeue >/dev/null 2>&1; then
    queued=$(squeue -h -u "$(id -un)" -n "$job_name" -o '%i %T' 2>/dev/null || true)
    if [[ -n $queued ]]; then
        echo "$queued" >&2
        die "jobs named $job_name are still queued/running (above); wait for them, or pass --force"
    fi
fi

info "resubmitting tasks: $redo"
exec "$HERE/submit.sh" "$SWEEP" --only "$redo" "${pass[@]}"
