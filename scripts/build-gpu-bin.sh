#!/usr/bin/env bash
# Prepares gpu-bin/ (git-ignored) for scripts/gpu-check.sh on the GPU machine, which has the
# driver and CUDA but no Rust: the CUDA test executables (tests/cuda*.rs) and the gpu_bench and
# gpu_bench_kmeans examples, built here with the kernels compiled in, stripped of debug info and
# gzip-compressed (each embeds ~20 MB of PTX and cubins, which compress ~5x) so that they fit
# the device tool's carry limit; scripts/gpu-check.sh decompresses them.
#
# Usage: scripts/build-gpu-bin.sh        then, with the device tool:
#        run(command="bash scripts/gpu-check.sh", carry=["gpu-bin"])
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${NVCC:-}" && -z "${CUDA_HOME:-}" ]]; then
  CUDA_HOME="$(bash scripts/install-nvcc.sh "${HOME}/.cache/laic-nvcc")"
  export CUDA_HOME
fi

rm -rf gpu-bin
mkdir -p gpu-bin/tests
cargo build --release --example gpu_bench --example gpu_bench_kmeans
cp target/release/examples/gpu_bench gpu-bin/gpu_bench
cp target/release/examples/gpu_bench_kmeans gpu-bin/gpu_bench_kmeans
cargo test --release --test cuda --test cuda_kmeans --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test == true) | .executable // empty' |
  while read -r exe; do
    cp "${exe}" "gpu-bin/tests/$(basename "${exe}" | sed 's/-[0-9a-f]*$//')"
  done
strip --strip-debug gpu-bin/gpu_bench gpu-bin/gpu_bench_kmeans gpu-bin/tests/*

# A build without nvcc would carry no kernels and every GPU test would fail there: refuse.
for f in gpu-bin/gpu_bench gpu-bin/gpu_bench_kmeans gpu-bin/tests/*; do
  for kernel in laic_gradnorm_f16_32x4 laic_km_assign_f16_32x4 laic_retrieve_f16_32x2_d512; do
    if ! grep -q "${kernel}" "${f}"; then
      echo "build-gpu-bin: ${f} has no ${kernel} embedded (was nvcc found?)" >&2
      exit 1
    fi
  done
done
gzip -9 -n gpu-bin/gpu_bench gpu-bin/gpu_bench_kmeans gpu-bin/tests/*
ls -la gpu-bin gpu-bin/tests
du -sh gpu-bin
