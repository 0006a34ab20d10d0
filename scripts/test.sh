#!/usr/bin/env bash
# Set up (venv + install) and run the test suite. The README's test command; .ci/run calls it.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests (exit 5): treating that as a failure" >&2
  exit 1
fi
exit "$status"
