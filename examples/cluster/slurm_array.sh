#!/usr/bin/env bash
# One shard of a palaeo-ssl extraction per task of a SLURM array job.
#
#   sbatch --array=0-7 examples/cluster/slurm_array.sh DATA OUT [palaeo-ssl extract options...]
#
# Task I of N runs `palaeo-ssl extract DATA --out OUT --shard I/N` (N = the array's size): it embeds
# the images whose path hashes to shard I and writes them as chunks into the store under OUT, which
# must be on a filesystem every node sees. Tasks need no coordination; a failed or preempted task
# is simply rerun (sbatch --array=3 ...) and computes only what it lacks. Nothing is consolidated
# here: when every task has finished, run the same command once without --shard, e.g. as a
# dependent job:
#
#   jid=$(sbatch --parsable --array=0-7 examples/cluster/slurm_array.sh DATA OUT --model dinov3-vitl16)
#   sbatch --dependency=afterany:$jid --wrap "palaeo-ssl extract DATA --out OUT --model dinov3-vitl16"
#
# The consolidating run computes whatever a failed task left missing, so afterany is safe.
# PALAEO_SSL overrides the command (default: palaeo-ssl), e.g. PALAEO_SSL="python -m palaeo_ssl".
#
#SBATCH --job-name=palaeo-ssl-extract
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=palaeo-ssl-extract-%A_%a.log
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: sbatch --array=0-(N-1) $0 DATA OUT [palaeo-ssl extract options...]" >&2
  exit 2
fi
data=$1 out=$2
shift 2
: "${SLURM_ARRAY_TASK_ID:?not an array task: submit with sbatch --array=0-(N-1)}"
# the array's size; SLURM sets SLURM_ARRAY_TASK_COUNT (older versions: from MIN and MAX)
count=${SLURM_ARRAY_TASK_COUNT:-$(( ${SLURM_ARRAY_TASK_MAX:?} - ${SLURM_ARRAY_TASK_MIN:-0} + 1 ))}
shard=$(( SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} ))

read -r -a cmd <<< "${PALAEO_SSL:-palaeo-ssl}"
exec "${cmd[@]}" extract "$data" --out "$out" --shard "$shard/$count" --no-progress "$@"
