#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler wheels from PyPI into a cache folder (idempotent) and
# prints the CUDA_HOME to use. Usage: scripts/install-nvcc.sh [DIR]   (default ~/.cache/laic-nvcc)
#
# Why these pins (DESIGN.md §4): the GPU machines run driver 580 (CUDA 13.0), which accepts PTX
# ISA <= 9.0; nvcc 13.0.x emits 9.0. The cu12 nvcc wheels hold no nvcc binary.
set -euo pipefail

DIR="${1:-${HOME}/.cache/laic-nvcc}"
PINS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
)
STAMP_TEXT="${PINS[*]}"
HOME_DIR="${DIR}/nvidia/cu13"

have() {
  [[ -x "${HOME_DIR}/bin/nvcc" && -x "${HOME_DIR}/bin/ptxas" && -f "${DIR}/.laic-stamp" ]] &&
    [[ "$(cat "${DIR}/.laic-stamp")" == "${STAMP_TEXT}" ]]
}

if ! have; then
  PY="${PYTHON:-$(command -v python3 || command -v python)}"
  mkdir -p "${DIR}"
  # --no-deps: the five wheels are the whole set; --target: no environment is touched.
  "${PY}" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
    --target "${DIR}" "${PINS[@]}" >&2
  # nvcc looks for cicc and libnvvm under $CUDA_HOME/nvvm; the nvvm wheel may unpack them
  # beside bin/ under its own prefix. Link them in when they are not already there.
  if [[ ! -x "${HOME_DIR}/nvvm/bin/cicc" ]]; then
    cicc="$(find "${DIR}/nvidia" -path '*/nvvm/bin/cicc' -type f | head -n 1)"
    if [[ -z "${cicc}" ]]; then
      echo "install-nvcc: cicc not found in the nvidia-nvvm wheel under ${DIR}" >&2
      exit 1
    fi
    nvvm_dir="$(dirname "$(dirname "${cicc}")")"
    ln -sfn "${nvvm_dir}" "${HOME_DIR}/nvvm"
  fi
  chmod +x "${HOME_DIR}"/bin/* "${HOME_DIR}"/nvvm/bin/* 2>/dev/null || true
  printf '%s' "${STAMP_TEXT}" >"${DIR}/.laic-stamp"
fi

# Prove the compiler runs before handing it out.
"${HOME_DIR}/bin/nvcc" --version >/dev/null
"${HOME_DIR}/bin/ptxas" --version >/dev/null
echo "${HOME_DIR}"
