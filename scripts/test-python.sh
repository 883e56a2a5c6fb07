#!/usr/bin/env bash
# Python bindings: a fresh virtualenv (.venv-ci), `pip install ./bindings/python` (which runs
# cargo build --release), then the pytest suite. Real-data tests read ../shared beside the
# repository (or $LAIC_SHARED_DIR) and skip, saying so, when it is absent.
# LAIC_REQUIRE_SHARED=1 turns those skips into failures (CI). pip downloads are cached in
# $HOME/.cache/pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-ci
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$HOME/.cache/pip} PIP_DISABLE_PIP_VERSION_CHECK=1

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q numpy pytest scikit-learn scipy safetensors ml_dtypes
"$VENV/bin/pip" install -q ./bindings/python
# From the repository root, so that `import laic` is the installed package, not the sources.
"$VENV/bin/python" -m pytest -p no:cacheprovider -rs bindings/python/tests "$@"
