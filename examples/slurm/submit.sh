#!/bin/bash
# examples/slurm/submit.sh SUBMISSIONS WORK SHARDS SEED  (run from the course checkout, on the login node)
set -euo pipefail
SUBMISSIONS=$1 WORK=$2 SHARDS=$3 SEED=$4
here=$(dirname "$0")
export SUBMISSIONS WORK SHARDS SEED
array=$(sbatch --parsable --array="1-$SHARDS" --export=ALL "$here/grade.sbatch")
sbatch --parsable --dependency="afterok:$array" --export=ALL "$here/merge.sbatch"
