#!/usr/bin/env bash
# Nsight Compute profiles of the three wgmma kernels at the issues' sizes, on the GPU machine:
# GradNorm (f16, 146,347 nouns × 2000 centres × 512), the k-means assignment (f16, 1,281,167
# points × 2000 centres × 512) and retrieval (f16, 50,000 images × 10,000 nouns × 512). One
# launch of each (after a warm-up), with the sections that say what bounds it: throughput
# against the ceilings, occupancy, scheduler and warp-state statistics (why warps stall), the
# instruction mix and the SASS lines that stall most. Expects gpu-bin/ from
# scripts/build-gpu-bin.sh, as scripts/gpu-check.sh does; ncu runs with --clock-control none
# (the clocks stay as the benchmarks see them).
#
# Usage (GPU machine, repository root): bash scripts/gpu-profile.sh
# The full reports go to $OUT/ncu.txt; the lines that matter most go to stdout.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
bash scripts/unpack-gpu-bin.sh
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
NCU="$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)"
if [[ -z "${NCU}" ]]; then
  echo "gpu-profile: no ncu on this machine"
  exit 1
fi
sections=(
  --section SpeedOfLight --section LaunchStats --section Occupancy --section SchedulerStats
  --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
  --section InstructionStats --section SourceCounters
)
# profile NAME KERNEL_REGEX COMMAND...: one launch of the kernel that COMMAND runs second.
profile() {
  local name="$1" regex="$2"
  shift 2
  local log
  log="$(mktemp)"
  timeout 75 "${NCU}" --clock-control none "${sections[@]}" -k "regex:${regex}" \
    --launch-skip 1 --launch-count 1 "$@" >"${log}" 2>&1
  echo "=== ncu ${name} rc=$?"
  { echo "=== ncu ${name}"; cat "${log}"; } >>"${OUT}/ncu.txt"
  grep -E 'Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per Thread|Issued Warp Per Scheduler|No Eligible|One or More Eligible|Active Warps Per Scheduler|Eligible Warps Per Scheduler|Warp Cycles Per Issued Instruction|Executed Ipc Active|stall|Stall' "${log}" | head -n 40
}
profile gradnorm '^laic_gradnorm_wg_f16_wg2$' gpu-bin/gpu_bench --f16
profile kmeans_assign '^laic_km_wg_assign_f16_wg2$' gpu-bin/gpu_bench_kmeans --kmeans-only --iteration-only
profile retrieve '^laic_retrieve_wg_f16_d512$' gpu-bin/gpu_bench_kmeans --retrieve-only
