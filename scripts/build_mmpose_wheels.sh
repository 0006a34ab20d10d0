#!/usr/bin/env bash
# Build the three wheels the optional `[mmpose]` extra needs on torch 2.14 / numpy 2, once, into a local wheelhouse,
# then install the extra from it:
#   bash scripts/build_mmpose_wheels.sh [WHEELHOUSE]        (default: ~/.cache/fypbench/wheelhouse)
#   SKIP_INSTALL=1 bash scripts/build_mmpose_wheels.sh       (build only)
# Run it inside the environment that should get the extra (it installs setuptools<81, cython and ninja there, and
# mmpose's own dependencies); to keep the main .venv as the tests expect it, use a second one, e.g.
#   python3.11 -m venv .venv-mmpose && . .venv-mmpose/bin/activate && pip install -e ".[test]" \
#     && pip install --no-deps mediapipe==0.10.14 && bash scripts/build_mmpose_wheels.sh
# Wheels already in the wheelhouse are reused. Why each one is built here (../shared/reference/dependencies.md has the measurements):
# - mmcv 2.1.0 (mmdet 3.3.0 rejects 2.2; mmpose imports mmcv.ops, so mmcv-lite is not enough) is source-only, and
#   its setup.py hard-codes -std=c++17 while torch 2.14's headers require C++20. ~8-10 min on 2 cores.
# - chumpy 0.70 (declared by mmpose, never imported) only builds without build isolation.
# - xtcocotools 1.14.3's registry wheel is compiled against numpy 1; rebuilt as 1.14.3+np2 so pip prefers it.
# Not part of CI's critical path: tests/metrics/test_mmpose_adapter.py skips when mmpose is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELHOUSE="${1:-${FYPBENCH_WHEELHOUSE:-$HOME/.cache/fypbench/wheelhouse}}"
mkdir -p "$WHEELHOUSE"
WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

have() { compgen -G "$WHEELHOUSE/$1" >/dev/null; }
log() { echo "build_mmpose_wheels: $*" >&2; }

# Build tools for the non-isolated builds; setuptools<81 keeps pkg_resources (mmengine imports it).
"$PYTHON" -m pip install -q "setuptools<81" wheel "cython>=3" ninja

fetch_sdist() {  # fetch_sdist NAME==VERSION -> prints the unpacked source directory
  local spec="$1" dest="$WORK/src-${1%%==*}"
  mkdir -p "$dest"
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$dest" "$spec" >&2
  local archive
  archive="$(ls "$dest"/*.tar.gz | head -n 1)"
  tar -xzf "$archive" -C "$dest"
  ls -d "$dest"/*/ | head -n 1
}

if have "mmcv-2.1.0-*.whl"; then
  log "mmcv 2.1.0: already in $WHEELHOUSE"
else
  log "mmcv 2.1.0: building from source (CPU ops, C++20), ~10 min on 2 cores"
  src="$(fetch_sdist mmcv==2.1.0)"
  grep -q -- "-std=c++17" "$src/setup.py" || { log "mmcv setup.py no longer sets -std=c++17; check the recipe"; exit 1; }
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA=0 MMCV_WITH_OPS=1 \
    "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELHOUSE" "$src"
fi

if have "chumpy-0.70-*.whl"; then
  log "chumpy 0.70: already in $WHEELHOUSE"
else
  log "chumpy 0.70: building without isolation"
  "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELHOUSE" chumpy==0.70
fi

if have "xtcocotools-1.14.3+np2-*.whl"; then
  log "xtcocotools 1.14.3+np2: already in $WHEELHOUSE"
else
  log "xtcocotools 1.14.3: rebuilding against numpy 2 as 1.14.3+np2"
  src="$(fetch_sdist xtcocotools==1.14.3)"
  version_file="$src/xtcocotools/version.py"  # setup.py reads __version__ / short_version from it
  grep -q "__version__ = '1.14.3'" "$version_file" || { log "$version_file does not set 1.14.3; check the recipe"; exit 1; }
  sed -i "s/__version__ = '1.14.3'/__version__ = '1.14.3+np2'/" "$version_file"
  "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELHOUSE" "$src"
  have "xtcocotools-1.14.3+np2-*.whl" || { log "the xtcocotools wheel is not named 1.14.3+np2; check the recipe"; exit 1; }
fi

ls -l "$WHEELHOUSE" >&2
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  "$PYTHON" -m pip install -q --find-links "$WHEELHOUSE" -e ".[mmpose]"
  "$PYTHON" -c "import mmcv, mmdet, mmpose; from mmcv.ops import nms; print('mmpose', mmpose.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__)"
fi
