#!/usr/bin/env bash
# submit.sh SWEEP.yaml [options] [-- extra sbatch args]
#
# Plans the sweep, reads the task count from <sweep dir>/sweep.json and submits
# sweep-array.sbatch as one job array.  Prints the job id on stdout (everything
# else goes to stderr).
#
# Options:
#   --partition P          Slurm partition
#   --time T               time limit per array element (e.g. 2:00:00)
#   --mem M                memory per array element (e.g. 16G)
#   --cpus-per-task C      CPUs per array element
#   --gpus-per-task N      GPUs per element (default 1; 0 on CPU-only clusters,
#                          e.g. the local test cluster)
#   --max-parallel K       at most K elements run at once (--array=...%K)
#   --tasks-per-element K  run K sweep tasks one after another in each element
#                          (default 1; for sweeps larger than MaxArraySize)
#   --only 3,7,9           submit only these task ids (forces K=1); ranges 3-5 ok
#   --log-dir DIR          where %A_%a.out/.err go (default <sweep dir>/slurm-logs)
#   --job-name NAME        default cavforge-<sweep file name>
#   --dry-run              print the sbatch command instead of running it
#
# Environment:
#   CAVFORGE_BIN           cavforge binary (default: cavforge on PATH)
#   CAVFORGE_SWEEP_DIR     skip `cavforge sweep plan` and use this sweep directory
#   CAVFORGE_SWEEP_JSON    skip planning and read this plan file directly
#   CAVFORGE_GPUS_PER_TASK, CAVFORGE_TASKS_PER_ELEMENT: defaults for the options
#   CAVFORGE_SWEEP_RUN_ARGS passed through to the job (extra `sweep run` words)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SBATCH_SCRIPT=$HERE/sweep-array.sbatch

die() { echo "submit: error: $*" >&2; exit 1; }
info() { echo "submit: $*" >&2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2; }

[[ $# -ge 1 && $1 != -* ]] || usage
SWEEP=$1
shift
[[ -f $SWEEP ]] || die "sweep file not found: $SWEEP"
SWEEP=$(cd "$(dirname "$SWEEP")" && pwd)/$(basename "$SWEEP")

partition='' time_limit='' mem='' cpus='' max_parallel='' only='' log_dir='' job_name='' dry_run=0
gpus=${CAVFORGE_GPUS_PER_TASK:-1}
k=${CAVFORGE_TASKS_PER_ELEMENT:-1}
k_given=0
extra_sbatch=()
while [[ $# -gt 0 ]]; do
    opt=$1
    case $opt in
        --partition | --time | --mem | --cpus-per-task | --gpus-per-task | --max-parallel | \
            --tasks-per-element | --only | --log-dir | --job-name)
            [[ $# -ge 2 ]] || die "$opt needs a value"
            val=$2
            shift 2
            ;;
        --*=*)
            set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
            continue
            ;;
        --dry-run) dry_run=1; shift; continue ;;
        --) shift; extra_sbatch=("$@"); break ;;
        -h | --help) usage ;;
        *) die "unknown option: $opt" ;;
    esac
    case $opt in
        --partition) partition=$val ;;
        --time) time_limit=$val ;;
        --mem) mem=$val ;;
        --cpus-per-task) cpus=$val ;;
        --gpus-per-task) gpus=$val ;;
        --max-parallel) max_parallel=$val ;;
        --tasks-per-element) k=$val; k_given=1 ;;
        --only) only=$val ;;
        --log-dir) log_dir=$val ;;
        --job-name) job_name=$val ;;
    esac
done

isint() { [[ $1 =~ ^[0-9]+$ ]]; }
isint "$gpus" || die "--gpus-per-task must be an integer >= 0, got '$gpus'"
[[ $k =~ ^[1-9][0-9]*$ ]] || die "--tasks-per-element must be >= 1, got '$k'"
[[ -z $max_parallel || $max_parallel =~ ^[1-9][0-9]*$ ]] || die "--max-parallel must be >= 1, got '$max_parallel'"

# --- cavforge binary (absolute, so the job does not depend on its PATH) -------
bin=${CAVFORGE_BIN:-cavforge}
if [[ $bin != */* ]]; then
    bin=$(command -v "$bin") || die "cavforge not found on PATH; set CAVFORGE_BIN"
fi
[[ -x $bin ]] || die "CAVFORGE_BIN is not executable: $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

# --- the plan ----------------------------------------------------------------
# Adapt here if `cavforge sweep plan` changes: it is assumed to print the sweep
# directory (last line of stdout) and to write <dir>/sweep.json with a top-level
# "tasks": [...] list, one entry per task id 0..N-1.
plan_json() {
    if [[ -n ${CAVFORGE_SWEEP_JSON:-} ]]; then
        echo "$CAVFORGE_SWEEP_JSON"
        return
    fi
    local dir=${CAVFORGE_SWEEP_DIR:-}
    if [[ -z $dir ]]; then
        dir=$("$bin" sweep plan "$SWEEP" | awk 'NF { last = $0 } END { print last }') ||
            die "'$bin sweep plan $SWEEP' failed"
        [[ -n $dir ]] || die "'$bin sweep plan' printed no sweep directory"
    fi
    echo "$dir/sweep.json"
}

count_tasks() { # count_tasks FILE
    if command -v jq >/dev/null 2>&1; then
        jq -e '.tasks | length' "$1"
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["tasks"]))' "$1"
    else
        die "need jq or python3 to read $1"
    fi
}

json=$(plan_json)
[[ -f $json ]] || die "plan file not found: $json"
json=$(cd "$(dirname "$json")" && pwd)/$(basename "$json")
n=$(count_tasks "$json") || die "cannot read a \"tasks\" list from $json"
if ! isint "$n" || ((n == 0)); then die "$json has no tasks"; fi
sweep_dir=$(dirname "$json")

# --- array spec -----------------------------------------------------------------
# compress_ids "9,3,4,5,7" -> "3-5,7,9"
compress_ids() {
    tr ',' '\n' <<<"$1" | sort -n -u | awk '
        NF == 0 { next }
        { if (started && $1 == prev + 1) { prev = $1; next }
          if (started) { out = out sep range(lo, prev); sep = "," }
          lo = $1; prev = $1; started = 1 }
        function range(a, b) { return a == b ? a : a "-" b }
        END { if (started) out = out sep range(lo, prev); print out }'
}

if [[ -n $only ]]; then
    ids=()
    IFS=',' read -r -a parts <<<"$only"
    for p in "${parts[@]}"; do
        p=${p// /}
        [[ -z $p ]] && continue
        if [[ $p =~ ^([0-9]+)-([0-9]+)$ ]]; then
            for ((i = 10#${BASH_REMATCH[1]}; i <= 10#${BASH_REMATCH[2]}; i++)); do ids+=("$i"); done
        elif isint "$p"; then
            ids+=("$((10#$p))")
        else
            die "--only: not a task id or range: '$p'"
        fi
    done
    ((${#ids[@]} > 0)) || die "--only: no task ids"
    for i in "${ids[@]}"; do
        ((i < n)) || die "--only: task $i out of range (plan has $n tasks: 0..$((n - 1)))"
    done
    ((k_given && k != 1)) && info "--only: ignoring --tasks-per-element $k (array index = task id)"
    k=1
    array=$(compress_ids "$(IFS=,; echo "${ids[*]}")")
    max_index=$(tr ',-' '\n' <<<"$array" | sort -n | tail -n1)
    count=$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)
else
    elements=$(((n + k - 1) / k))
    max_index=$((elements - 1))
    array=0-$max_index
    count=$elements
fi
[[ -n $max_parallel ]] && array+="%$max_parallel"

if command -v scontrol >/dev/null 2>&1; then
    max_array=$(scontrol show config 2>/dev/null | awk -F= '/^MaxArraySize/ { gsub(/ /, "", $2); print $2 }')
    if isint "${max_array:-}" && ((max_index >= max_array)); then
        die "array index $max_index >= MaxArraySize $max_array; use --tasks-per-element $(((n + max_array - 1) / max_array))"
    fi
fi

# --- submit ------------------------------------------------------------------------
log_dir=${log_dir:-$sweep_dir/slurm-logs}
if ((!dry_run)); then mkdir -p "$log_dir"; fi
log_dir=$(cd "$log_dir" 2>/dev/null && pwd || echo "$log_dir")
[[ -n $job_name ]] || job_name=cavforge-$(basename "${SWEEP%.*}")

for v in "$bin" "$SWEEP"; do
    [[ $v != *,* ]] || die "path contains a comma (breaks sbatch --export): $v"
done
export_list="ALL,CAVFORGE_BIN=$bin,CAVFORGE_SWEEP=$SWEEP,CAVFORGE_TASKS_PER_ELEMENT=$k,CAVFORGE_NUM_TASKS=$n"

args=(--parsable "--array=$array" "--job-name=$job_name"
    "--output=$log_dir/%A_%a.out" "--error=$log_dir/%A_%a.err" --ntasks=1)
[[ -n $partition ]] && args+=("--partition=$partition")
[[ -n $time_limit ]] && args+=("--time=$time_limit")
[[ -n $mem ]] && args+=("--mem=$mem")
[[ -n $cpus ]] && args+=("--cpus-per-task=$cpus")
((gpus > 0)) && args+=("--gpus-per-task=$gpus")
args+=("--export=$export_list" "${extra_sbatch[@]}" "$SBATCH_SCRIPT")

info "$n tasks in $json; $count array elements ($array), $k task(s) each, $gpus GPU(s) per element; logs in $log_dir"
if ((dry_run)); then
    line=sbatch
    for a in "${args[@]}"; do
        if [[ $a =~ ^[A-Za-z0-9_./%=,:+@-]+$ ]]; then line+=" $a"; else line+=" $(printf '%q' "$a")"; fi
    done
    echo "$line"
    exit 0
fi
if ! out=$(sbatch "${args[@]}"); then
    ((gpus > 0)) && info "hint: clusters without GPU GRES (e.g. local-cluster.sh) need --gpus-per-task 0"
    die "sbatch failed"
fi
echo "${out%%;*}"
