# Sourced by scripts/test.sh and scripts/run.sh: create .venv (Python 3.11) if needed and install fypbench.
# pip (not uv/poetry) so torch==2.14.1 / torchvision==0.29.1 come from the machine's local wheel store.
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
python -m pip install --quiet --disable-pip-version-check --no-deps "mediapipe==0.10.14"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
