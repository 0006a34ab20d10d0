#!/usr/bin/env bash
# Set up (venv + install) and run the main job on the mini world. The README's first command.
#   bash scripts/run.sh [fypbench run options...]     e.g. bash scripts/run.sh --limit 128
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
fypbench protocol validate fyp-1024
fypbench run --methods all "$@"
