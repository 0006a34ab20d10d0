#!/usr/bin/env bash
# Set up (venv + install) and run the main job on the mini world. The README's first command.
#   bash scripts/run.sh [fypbench run options...]     e.g. bash scripts/run.sh --subset dev128
# One process per core (at most 8), one thread each: `torchrun` gives each its shard of the job list (the videos
# and scores do not depend on the process count). FYPBENCH_PROCESSES=N sets the count; 1 runs a single process
# (also the way to combine this script with an explicit --shard I/N).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
fypbench protocol validate fyp-1024
cores=$(nproc 2>/dev/null || echo 1)
processes=${FYPBENCH_PROCESSES:-$(( cores < 8 ? cores : 8 ))}
if [ "$processes" -gt 1 ]; then
  export OMP_NUM_THREADS=1 GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-lo}
  exec python -m torch.distributed.run --standalone --nproc_per_node "$processes" \
    -m fypbench.cli run --methods all "$@"
fi
exec fypbench run --methods all "$@"
