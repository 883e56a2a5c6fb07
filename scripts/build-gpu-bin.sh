#!/usr/bin/env bash
# Prepares gpu-bin/ (git-ignored) for scripts/gpu-check.sh on the GPU machine, which has the
# driver and CUDA but no Rust: the CUDA test executables (tests/cuda.rs, tests/cuda_clip.rs)
# and the gpu_bench and clip_gpu_bench examples, built here
# with the kernels compiled in, stripped of debug info so they fit the device tool's carry limit.
#
# The binaries are packed into gpu-bin/bins.tar.gz (gpu-check.sh unpacks it).
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
cargo build --release --example gpu_bench --example clip_gpu_bench
cp target/release/examples/gpu_bench gpu-bin/gpu_bench
cp target/release/examples/clip_gpu_bench gpu-bin/clip_gpu_bench
cargo test --release --test cuda --test cuda_clip --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test == true) | .executable // empty' |
  while read -r exe; do
    cp "${exe}" "gpu-bin/tests/$(basename "${exe}" | sed 's/-[0-9a-f]*$//')"
  done
strip --strip-debug gpu-bin/gpu_bench gpu-bin/clip_gpu_bench gpu-bin/tests/*

# A build without nvcc would carry no kernels and every GPU test would fail there: refuse.
# (Each binary keeps only the kernels it uses: GradNorm ones or CLIP ones.)
for f in gpu-bin/gpu_bench gpu-bin/clip_gpu_bench gpu-bin/tests/*; do
  if ! grep -q -e "laic_gradnorm_f16_32x4" -e "laic_clip_softmax_f16" "${f}"; then
    echo "build-gpu-bin: ${f} has no CUDA kernels embedded (was nvcc found?)" >&2
    exit 1
  fi
done
ls -la gpu-bin gpu-bin/tests
# Pack: every binary embeds the same kernels (~19 MB of PTX and cubin) and they compress ~5x;
# the device tool carries at most 64 MiB. scripts/gpu-check.sh unpacks gpu-bin/bins.tar.gz.
tar -C gpu-bin -czf gpu-bin.tar.gz.tmp gpu_bench clip_gpu_bench tests
rm -rf gpu-bin/gpu_bench gpu-bin/clip_gpu_bench gpu-bin/tests
mv gpu-bin.tar.gz.tmp gpu-bin/bins.tar.gz
du -sh gpu-bin
