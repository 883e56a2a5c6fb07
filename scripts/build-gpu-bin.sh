#!/usr/bin/env bash
# Prepares gpu-bin/ (git-ignored) for scripts/gpu-check.sh on the GPU machine, which has the
# driver and CUDA but no Rust: the CUDA test executables (tests/cuda*.rs) and the GPU benchmark
# examples, built here with the kernels compiled in and stripped of debug info.
#
# The binaries are packed into gpu-bin/bins.tar.xz (scripts/unpack-gpu-bin.sh unpacks it): the device tool
# carries at most 64 MiB with the working tree (~20 MB), and each of the seven binaries embeds
# the same ~20 MB of PTX and cubins. gzip (a 32 KB window) compressed them to 54 MB; xz with a
# dictionary larger than two binaries stores the repeated kernels once: ~6 MB (measured
# 2026-11-27; ~3 minutes on two cores).
#
# The CLIP ViT-B/32 features of ../shared/data/clip-vit-b32 that are not bundled in data/ (DTD,
# UCF101: 9 MB) go to gpu-bin/data/, for the GPU pipeline test on every dataset.
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
tar -C gpu-bin -cf - "${examples[@]}" tests | xz -T1 --lzma2=preset=6,dict=192MiB >gpu-bin.tar.xz.tmp
rm -rf "${examples[@]/#/gpu-bin/}" gpu-bin/tests
mv gpu-bin.tar.xz.tmp gpu-bin/bins.tar.xz
features=../shared/data/clip-vit-b32
if [[ -d "${features}" ]]; then
  mkdir -p gpu-bin/data
  cp "${features}/dtd.safetensors" "${features}/ucf101.safetensors" gpu-bin/data/
else
  echo "build-gpu-bin: no ${features}: the GPU pipeline test runs on Oxford Pets only" >&2
fi
du -sh gpu-bin
# What the device tool carries: the tracked and untracked files, and gpu-bin.
total=$(( $(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -n 1 | cut -f1) + $(du -sb gpu-bin | cut -f1) ))
echo "build-gpu-bin: the working tree and gpu-bin come to $(( total / 1048576 )) MiB (the device tool's limit: 64 MiB)"
if (( total > 64 * 1048576 )); then
  echo "build-gpu-bin: over the device tool's 64 MiB" >&2
  exit 1
fi
