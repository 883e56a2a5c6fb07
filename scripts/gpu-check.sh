#!/usr/bin/env bash
# Runs every GPU test and benchmark on the GPU machine in one call and prints a short table
# last. Expects gpu-bin/ from scripts/build-gpu-bin.sh (carried with the call); the GPU machine
# has the driver, CUDA 13.0 and PyTorch but no Rust.
#
# Usage (GPU machine, repository root): bash scripts/gpu-check.sh [--quick] [--part tests|bench]
#   --quick: 16,384 nouns instead of 146,347 (a smoke run).
#   --parallel: section 1 runs every test binary and configuration at once (one GPU, 16 cores:
#   the tests check results, never times), its wall time that of the slowest.
#   --no-clip-bench: benchmarks without section 4 (CLIP; ~160 s on an H200).
#   --part tests: only section 1 (the GPU tests); --part bench: only sections 2-4 (benchmarks,
#   with the PyTorch anchors); default both. The whole run may approach the device tool's
#   10-minute limit per command: two calls on the same warm machine, one part each, stay
#   under it. Each section's start time (seconds since the script began) goes to stdout.
# Full logs and JSON lines go to $OUT (the device tool's output folder, which returns at most 8
# files: keep them few) or a temporary folder.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
QUICK=""
PARALLEL=""
CLIP=1
PART="all"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK="--quick" ;;
    --parallel) PARALLEL=1 ;;
    --no-clip-bench) CLIP="" ;;
    --part) PART="${2:-}"; shift ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "${PART}" in all | tests | bench) ;; *) echo "gpu-check: --part tests|bench" >&2; exit 2 ;; esac
section() { echo "[gpu-check t=${SECONDS}s] $*"; }
bash scripts/unpack-gpu-bin.sh
export LAIC_REQUIRE_CUDA=1
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader |
  tee "${OUT}/tests.txt"

if [[ "${PART}" != bench ]]; then
section "1. GPU tests"
# 1. GPU tests (parity with the CPU on awkward sizes, device-pointer path, errors), with the
#    default kernels (on an H100/H200: wgmma GradNorm, k-means assignment and retrieval,
#    k-means++ and Lloyd loops on the device, CLIP attention fused on tensor cores for f16/bf16),
#    again with each alternative GradNorm kernel forced (wg2d, wg2s: split centre streams; 32x4),
#    cuda_kmeans again with the mma.sync k-means assignment and retrieval (mma:
#    LAIC_CUDA_KMEANS_WGMMA=0 LAIC_CUDA_RETRIEVE_WGMMA=0) and with the host loops of k-means++
#    and Lloyd (host: LAIC_CUDA_KMEANS_DEVICE=0), and cuda_clip again with each other attention
#    (cublas: LAIC_CLIP_ATTENTION=cublas; simt: fused-simt, CUDA cores for all).
# One test binary under one configuration; its log goes to $3. Runs in a subshell so that the
# configurations' environments never mix (--parallel runs them side by side).
run_config() (
  t="$1" cfg="$2" log="$3"
  name="$(basename "${t}")"
  limit=150
  case "${cfg}" in
    # The pipeline test runs DTD and UCF101 too (build-gpu-bin.sh copied their features).
    default) export LAIC_FEATURES_DIR=gpu-bin/data; [[ "${name}" == cuda_kmeans ]] && limit=300 ;;
    mma) export LAIC_CUDA_KMEANS_WGMMA=0 LAIC_CUDA_RETRIEVE_WGMMA=0 ;;
    host) export LAIC_CUDA_KMEANS_DEVICE=0 ;;
    cublas) export LAIC_CLIP_ATTENTION=cublas ;;
    simt) export LAIC_CLIP_ATTENTION=fused-simt ;;
    *) export LAIC_CUDA_GRADNORM_CONFIG="${cfg}" ;;
  esac
  timeout "${limit}" "${t}" --test-threads=1 --nocapture >"${log}" 2>&1
  echo "rc=$?" >>"${log}.rc"
)
# Every (binary, configuration) pair this section runs.
configs=()
for t in gpu-bin/tests/*; do
  name="$(basename "${t}")"
  for cfg in default wg2d wg2s 32x4 mma host cublas simt; do
    case "${cfg}" in
      default) ;;
      mma | host) [[ "${name}" == cuda_kmeans ]] || continue ;;
      cublas | simt) [[ "${name}" == cuda_clip ]] || continue ;;
      *) [[ "${name}" == cuda ]] || continue ;;
    esac
    configs+=("${t}:${cfg}")
  done
done
logs="$(mktemp -d)"
for i in "${!configs[@]}"; do
  if [[ -n "${PARALLEL}" ]]; then
    run_config "${configs[i]%%:*}" "${configs[i]#*:}" "${logs}/${i}" &
  else
    run_config "${configs[i]%%:*}" "${configs[i]#*:}" "${logs}/${i}"
  fi
done
wait
for i in "${!configs[@]}"; do
  name="$(basename "${configs[i]%%:*}")" cfg="${configs[i]#*:}" log="${logs}/${i}"
  rc="$(sed -n 's/^rc=//p' "${log}.rc" 2>/dev/null)"
  { echo "=== ${name} [${cfg}] rc=${rc}"; cat "${log}"; } >>"${OUT}/tests.log"
  summary="$(grep -E '^test result:' "${log}" | tail -n 1)"
  echo "${name} [${cfg}]: rc=${rc} ${summary}" | tee -a "${OUT}/tests.txt"
  grep -E 'max relative error|max abs|panicked|FAILED|SKIPPED|mismatch|NMI|objective|wgmma kernel|wgmma probe|device lloyd|device seeding' "${log}" | tail -n 40
done
unset LAIC_CUDA_GRADNORM_CONFIG LAIC_CUDA_KMEANS_WGMMA LAIC_CUDA_RETRIEVE_WGMMA LAIC_CUDA_KMEANS_DEVICE LAIC_CLIP_ATTENTION LAIC_FEATURES_DIR
# On a failure of the CLIP parity tests, the per-step trace of the random model.
for cfg in default:default cublas:cublas simt:fused-simt; do
  if ! grep -q "^cuda_clip \[${cfg%%:*}\]: rc=0 " "${OUT}/tests.txt" 2>/dev/null; then
    trace="$(mktemp)"
    LAIC_CLIP_ATTENTION="${cfg#*:}" LAIC_CLIP_TRACE=1 timeout 60 gpu-bin/tests/cuda_clip \
      --test-threads=1 --nocapture cuda_towers_match_the_cpu_on_a_random_model_at_awkward_sizes \
      >"${trace}" 2>&1
    { echo "=== cuda_clip trace [${cfg}]"; cat "${trace}"; } >>"${OUT}/tests.log"
    echo "cuda_clip trace [${cfg}]:"
    grep -E 'clip-trace|panicked' "${trace}" | head -n 40
  fi
done
fi

if [[ "${PART}" != tests ]]; then
section "2. GradNorm benchmarks"
# 2. The kernel at the issue's sizes, with the default block shape and two others.
: >"${OUT}/bench.jsonl"
for cfg in default wg2d 32x4; do
  if [[ "${cfg}" == default ]]; then
    unset LAIC_CUDA_GRADNORM_CONFIG
  else
    export LAIC_CUDA_GRADNORM_CONFIG="${cfg}"
  fi
  timeout 60 gpu-bin/gpu_bench ${QUICK} --label "${cfg}" >>"${OUT}/bench.jsonl" 2>>"${OUT}/bench.err" ||
    echo "gpu_bench ${cfg}: rc=$?" | tee -a "${OUT}/bench.err"
done
# wg2s (each warpgroup its own centre stream; not yet run on a GPU), f16 only.
LAIC_CUDA_GRADNORM_CONFIG=wg2s timeout 40 gpu-bin/gpu_bench ${QUICK} --f16 --label wg2s \
  >>"${OUT}/bench.jsonl" 2>>"${OUT}/bench.err" || echo "gpu_bench wg2s: rc=$?" | tee -a "${OUT}/bench.err"
# Where a wg2 tile's time goes (f16): the same stream and products without the fold, and the
# same stream and fold without the products (diagnostic kernels; their scores are garbage).
for cfg in wg2nofold wg2nomma; do
  LAIC_CUDA_GRADNORM_CONFIG="${cfg}" timeout 40 gpu-bin/gpu_bench ${QUICK} --f16 --label diag \
    >>"${OUT}/bench.jsonl" 2>>"${OUT}/bench.err" || echo "gpu_bench ${cfg}: rc=$?" | tee -a "${OUT}/bench.err"
done
unset LAIC_CUDA_GRADNORM_CONFIG

section "2b. k-means and retrieval benchmarks"
# 2b. k-means iteration and retrieval at issue 8's sizes (wgmma kernels on an H100/H200); then
#     both again with the mma.sync kernels (kernels/kmeans.cu, kernels/retrieve.cu).
timeout 120 gpu-bin/gpu_bench_kmeans ${QUICK} >>"${OUT}/bench.jsonl" 2>>"${OUT}/bench.err" ||
  echo "gpu_bench_kmeans: rc=$?" | tee -a "${OUT}/bench.err"
LAIC_CUDA_KMEANS_WGMMA=0 LAIC_CUDA_RETRIEVE_WGMMA=0 timeout 120 gpu-bin/gpu_bench_kmeans ${QUICK} --label mma \
  >>"${OUT}/bench.jsonl" 2>>"${OUT}/bench.err" ||
  echo "gpu_bench_kmeans mma: rc=$?" | tee -a "${OUT}/bench.err"

section "3. PyTorch anchors"
# 3. PyTorch eager and torch.compile on the same card, in the same call.
timeout 150 python3 scripts/torch_gradnorm_anchor.py ${QUICK} >"${OUT}/torch.jsonl" 2>"${OUT}/torch.err" ||
  { echo "torch anchor: rc=$?"; tail -n 5 "${OUT}/torch.err"; }
timeout 90 python3 scripts/torch_kmeans_anchor.py ${QUICK} >>"${OUT}/torch.jsonl" 2>>"${OUT}/torch.err" ||
  { echo "torch k-means anchor: rc=$?"; tail -n 5 "${OUT}/torch.err"; }

if [[ -n "${CLIP}" ]]; then
section "4. CLIP"
# 4. CLIP: the throughput of a random ViT-B/32 (cuBLAS attention, then each fused attention kernel)
#    and PyTorch + transformers fp16 on the same work; then where the device time goes
#    (--profile with LAIC_CLIP_PROFILE=1: an event after every step), cuBLAS and fused.
: >"${OUT}/clip.jsonl"
for attention in cublas fused fused-simt; do
  LAIC_CLIP_ATTENTION="${attention}" timeout 100 gpu-bin/clip_gpu_bench ${QUICK} \
    >>"${OUT}/clip.jsonl" 2>>"${OUT}/bench.err" ||
    { echo "clip_gpu_bench ${attention}: rc=$?"; tail -n 5 "${OUT}/bench.err"; }
done
for attention in cublas fused; do
  LAIC_CLIP_ATTENTION="${attention}" LAIC_CLIP_PROFILE=1 timeout 60 gpu-bin/clip_gpu_bench ${QUICK} \
    --profile >>"${OUT}/clip.jsonl" 2>>"${OUT}/bench.err" ||
    { echo "clip_gpu_bench --profile ${attention}: rc=$?"; tail -n 5 "${OUT}/bench.err"; }
done
# A folder of generated JPEGs to embeddings: decode, preprocess, upload, encoder (bench clip_folder).
timeout 120 gpu-bin/clip_folder_bench --device cuda ${QUICK} >>"${OUT}/clip.jsonl" 2>>"${OUT}/bench.err" ||
  { echo "clip_folder_bench: rc=$?"; tail -n 5 "${OUT}/bench.err"; }
timeout 80 python3 scripts/clip_torch_gpu_bench.py ${QUICK} >"${OUT}/clip_torch.jsonl" 2>>"${OUT}/torch.err" ||
  { echo "clip torch: rc=$?"; tail -n 5 "${OUT}/torch.err"; }
fi

fi

# 5. The table.
section "5. table"
python3 scripts/gpu_table.py "${OUT}"
