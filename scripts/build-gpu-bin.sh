#!/usr/bin/env bash
# Prepares gpu-bin/ (git-ignored) for scripts/gpu-check.sh on the GPU machine, which has the
# driver and CUDA but no Rust: the CUDA test executables (tests/cuda*.rs) and the GPU benchmark
# examples, built here with the kernels compiled in and stripped of debug info.
#
# The binaries are packed into gpu-bin/bins.tar.gz (gpu-check.sh unpacks it): each embeds
# ~20 MB of PTX and cubins, which compress ~5x, and the device tool carries at most 64 MiB.
#
# Usage: scripts/build-gpu-bin.sh        then, with the device tool:
#        run(command="bash scripts/gpu-check.sh", carry=["gpu-bin"])
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${NVCC:-}" && -z "${CUDA_HOME:-}" ]]; then
  CUDA_HOME="$(bash scripts/install-nvcc.sh "${HOME}/.cache/laic-nvcc")"
  export CUDA_HOME
fi

examples=(gpu_bench gpu_bench_kmeans clip_gpu_bench clip_folder_bench)
rm -rf gpu-bin
mkdir -p gpu-bin/tests
command -v nasm >/dev/null 2>&1 ||
  echo "build-gpu-bin: no nasm here: JPEGs decode with libjpeg-turbo's C code (about 2x slower)" >&2
cargo build --release "${examples[@]/#/--example=}"
for e in "${examples[@]}"; do cp "target/release/examples/${e}" "gpu-bin/${e}"; done
cargo test --release --test cuda --test cuda_kmeans --test cuda_clip --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test == true) | .executable // empty' |
  while read -r exe; do
    cp "${exe}" "gpu-bin/tests/$(basename "${exe}" | sed 's/-[0-9a-f]*$//')"
  done
strip --strip-debug "${examples[@]/#/gpu-bin/}" gpu-bin/tests/*

# A build without nvcc would carry no kernels and every GPU test would fail there: refuse.
for f in "${examples[@]/#/gpu-bin/}" gpu-bin/tests/*; do
  if ! grep -q -e "laic_gradnorm_f16_32x4" -e "laic_clip_softmax_f16" "${f}"; then
    echo "build-gpu-bin: ${f} has no CUDA kernels embedded (was nvcc found?)" >&2
    exit 1
  fi
done
ls -la gpu-bin gpu-bin/tests
tar -C gpu-bin -czf gpu-bin.tar.gz.tmp "${examples[@]}" tests
rm -rf "${examples[@]/#/gpu-bin/}" gpu-bin/tests
mv gpu-bin.tar.gz.tmp gpu-bin/bins.tar.gz
du -sh gpu-bin
