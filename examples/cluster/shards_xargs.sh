#!/usr/bin/env bash
# A palaeo-ssl extraction split into N shards run side by side with xargs -P, then consolidated.
#
#   examples/cluster/shards_xargs.sh N DATA OUT [palaeo-ssl extract options...]
#
# Runs `palaeo-ssl extract DATA --out OUT --shard I/N` for I = 0 .. N-1, PARALLEL at a time
# (default N), then `palaeo-ssl extract DATA --out OUT` once, which consolidates the shards into
# one store and computes anything a failed shard left missing. The same pattern works over ssh
# or any batch system: one shard per task, one consolidating run at the end. Rerunning the
# script after an interruption computes only what is missing.
# PALAEO_SSL overrides the command (default: palaeo-ssl), e.g. PALAEO_SSL="python -m palaeo_ssl".
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 N DATA OUT [palaeo-ssl extract options...]" >&2
  exit 2
fi
n=$1 data=$2 out=$3
shift 3
read -r -a cmd <<< "${PALAEO_SSL:-palaeo-ssl}"

status=0
seq 0 $(( n - 1 )) | xargs -P "${PARALLEL:-$n}" -I{} \
  "${cmd[@]}" extract "$data" --out "$out" --shard "{}/$n" --no-progress "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "$0: at least one shard failed (exit $status); consolidating anyway: what it missed is computed now" >&2
fi
exec "${cmd[@]}" extract "$data" --out "$out" "$@"
