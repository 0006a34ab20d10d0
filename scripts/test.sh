#!/usr/bin/env bash
# Set up (venv + install) and run the test suite. The README's test command; .ci/run calls it.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The HTML report test drives Debian's chromium (browser test tools cannot download their own browsers here).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "scripts/test.sh: could not install chromium; the HTML report test will be skipped" >&2
fi
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests (exit 5): treating that as a failure" >&2
  exit 1
fi
exit "$status"
