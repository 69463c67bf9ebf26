#!/bin/bash
# Queues the grading of a class on Slurm: an array job of SHARDS shards (grade.sbatch), then the merge
# (merge.sbatch) with --dependency=afterok, so it runs only if every shard succeeded. On the login node:
#   examples/slurm/submit.sh SUBMISSIONS WORK SHARDS SEED
# WORK must be a folder every node can write; the jobs' logs go to WORK/logs, the result to WORK/merged.
# COURSE (optional) is the command that runs the course's CLI on the nodes; the default is this
# checkout's venv, so the checkout must be visible to the nodes at the same path.
# Prints the two job ids; follow them with `squeue -j ARRAY,MERGE`.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 SUBMISSIONS WORK SHARDS SEED" >&2; exit 2; }
[[ $3 =~ ^[1-9][0-9]*$ ]] || { echo "$0: SHARDS must be a whole number >= 1, not '$3'" >&2; exit 2; }
[ -d "$1" ] || { echo "$0: SUBMISSIONS: no such folder: $1" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SUBMISSIONS=$(realpath "$1") WORK=$(realpath -m "$2") SHARDS=$3 SEED=$4
COURSE="${COURSE:-$root/.venv/bin/python -m course_lib}"
export SUBMISSIONS WORK SHARDS SEED COURSE
mkdir -p "$WORK/logs"
array=$(sbatch --parsable --array="1-$SHARDS" --chdir="$WORK" --output="$WORK/logs/%x-%A_%a.log" \
  --export=ALL "$here/grade.sbatch")
array=${array%%;*}  # "id;cluster" on a multi-cluster setup
merge=$(sbatch --parsable --dependency="afterok:$array" --chdir="$WORK" --output="$WORK/logs/%x-%j.log" \
  --export=ALL "$here/merge.sbatch")
merge=${merge%%;*}
echo "grade array job: $array (shards 1-$SHARDS)"
echo "merge job: $merge (runs after every shard succeeded; result in $WORK/merged)"
