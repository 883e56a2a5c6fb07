#!/usr/bin/env python3
"""Mutation check of the kernels that run on the CPU (tests/kernel_emu).

Each mutation below is a small, plausible bug in a kernel: an off-by-one wait, a missing
barrier, a dropped swizzle, a wrong plane. The script applies each to a copy of kernels/, builds
the driver that covers it exactly as tests/kernels_on_cpu.rs does (AddressSanitizer + UBSan),
runs it, and expects it to FAIL. A mutation that passes ("SURVIVED") is a class of bug the
emulation cannot see; one whose source line is gone ("NOT APPLIED") needs updating here.

The unmutated drivers run first (their failure stops the script). Not part of CI: about ten
minutes on two cores. Run it after changing a kernel, a driver or the emulation.

    python3 scripts/kernel_mutations.py [-j JOBS] [NAME ...]

Exit status: 0 when every mutation was caught, 1 otherwise.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, driver, file under kernels/, source text (must occur exactly once), replacement, what
# the mutation breaks.
MUTATIONS = [
    # GradNorm, wgmma (gradnorm_wgmma.cu, wgmma.cuh)
    ("no-swizzle", "gradnorm", "wgmma.cuh",
     "return (uint32_t)(r * ROW + ((u ^ (r & 7)) << 4));", "return (uint32_t)(r * ROW + (u << 4));",
     "tiles written without the 128-byte swizzle that the descriptors read"),
    ("no-1024-alignment", "gradnorm", "gradnorm_wgmma.cu",
     "unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);",
     "unsigned char* smem = smem_raw;",
     "swizzled tiles not 1024-byte aligned"),
    ("wgmma-wait-2", "gradnorm", "gradnorm_wgmma.cu",
     "wgmma_wait<1>();  // chunk s - 1 is consumed", "wgmma_wait<2>();  // chunk s - 1 is consumed",
     "a stage refilled while products still read it"),
    ("cp-async-wait-PF", "gradnorm", "gradnorm_wgmma.cu",
     "cp_async_wait<PF - 1>();", "cp_async_wait<PF>();",
     "products issued on a stage that has not landed"),
    ("no-named-barrier", "gradnorm", "gradnorm_wgmma.cu",
     "named_barrier(1 + (threadIdx.x >> 7), 128);", ";",
     "split streams (wg2s) without their per-warpgroup barrier"),
    ("no-epilogue-wait", "gradnorm", "gradnorm_wgmma.cu",
     "            wgmma_wait<0>();\n            fence_regs(acc);\n            c.epilogue(acc, ts - 1);",
     "            fence_regs(acc);\n            c.epilogue(acc, ts - 1);",
     "a tile folded while its products are in flight"),
    ("row-scales-swapped", "gradnorm", "gradnorm_wgmma.cu",
     "c.rs[i] = row_info[2 * (warp * 16 + g + 8 * i)];",
     "c.rs[i] = row_info[2 * (warp * 16 + g + 8 * (1 - i))];",
     "a thread's two rows take each other's logit scale"),
    ("stage-wrap", "gradnorm", "gradnorm_wgmma.cu",
     "if (++mma_stage == STAGES) mma_stage = 0;", "if (++mma_stage == STAGES - 1) mma_stage = 0;",
     "products read the wrong stage after the first wrap"),
    ("uniform-pass-tile-wrap", "gradnorm", "gradnorm_wgmma.cu",
     "if (++ld_tile == ntiles) ld_tile = 0;", "++ld_tile;",
     "the uniform target's second pass does not restart at the first tile"),
    ("no-padding-mask-wgmma", "gradnorm", "gradnorm_wgmma.cu",
     "if (padded) mask_padding", "if (false) mask_padding",
     "padding centres fold in as logits of 0"),
    # GradNorm, mma.sync (gradnorm.cu) and the shared fold (gradnorm_common.cuh)
    ("mma-cp-async-wait", "gradnorm", "gradnorm.cu",
     "cp_async_wait<STAGES - 2>();", "cp_async_wait<STAGES - 1>();",
     "mma.sync products on a chunk that has not landed"),
    ("no-padding-mask-mma", "gradnorm", "gradnorm.cu",
     "if (padded) mask_padding", "if (false) mask_padding",
     "padding centres fold in as logits of 0"),
    ("max-counted-in-R", "gradnorm", "gradnorm_common.cuh",
     "if (colbase + nt * 8 + j == targ[r]) z[r][nt][j] = -INFINITY;", ";",
     "the new max also summed among the non-max terms"),
    ("sums-relative-to-max", "gradnorm", "gradnorm_common.cuh",
     "for (int r = 0; r < R; ++r) ref[r] = quad_max(lane_max(z[r]));", ";",
     "a moved tile's R_q terms taken relative to the max (they underflow f32: session 3's bug)"),
    ("general-q-as-two", "gradnorm", "gradnorm_common.cuh",
     "if (power == POWER_TWO) {", "if (power == POWER_TWO || power == POWER_GENERAL) {",
     "R_q of a general q summed as squares"),
    ("rows-argmax-crossed", "gradnorm", "gradnorm_common.cuh",
     "st[r].arg = targ[r];", "st[r].arg = targ[R - 1 - r];",
     "two rows folded together take each other's new argmax (wgmma kernels, R = 2)"),
    ("divergent-shuffle", "gradnorm", "gradnorm_common.cuh",
     "if (__any_sync(0xffffffffu, any_moved)) {", "if (any_moved) {",
     "shuffles inside a branch that diverges within the warp"),
    # k-means assignment, wgmma (kmeans_wgmma.cu)
    ("winner-column", "kmeans_assign", "kmeans_wgmma.cu",
     "arg[i] = tile * BN + 2 * t + ha[0];", "arg[i] = tile * BN + t + ha[0];",
     "the winner's column from the wrong fragment index"),
    ("points-lo-plane", "kmeans_assign", "kmeans_wgmma.cu",
     "descriptor(a0 + a_plane + kk * 32), descriptor(b0 + kk * 32), 1);",
     "descriptor(a0 + kk * 32), descriptor(b0 + kk * 32), 1);",
     "f32 points' lo plane read as the hi plane"),
    ("padding-bias", "kmeans_assign", "kmeans_wgmma.cu",
     "b[nt][1] = col + 1 < p.k ? b2.y : INFINITY;", "b[nt][1] = col + 1 <= p.k ? b2.y : INFINITY;",
     "one padding centre scored as a real one"),
    ("points-chunk-loads", "kmeans_assign", "kmeans_wgmma.cu",
     "if (ld_step < nchunks) {", "if (ld_step < 1) {",
     "only the points' first chunk loaded"),
    ("next-tile-rows", "kmeans_assign", "kmeans_wgmma.cu",
     "ld_src += (size_t)(BN - 1) * p.dp;", "ld_src += (size_t)BN * p.dp;",
     "the next tile's centres start one row late"),
    # retrieval, wgmma (retrieve_wgmma.cu, wgmma.cuh)
    ("rt-n-major-lbo", "retrieve", "retrieve_wgmma.cu",
     "kk * 16 * ROW, CHUNK);", "kk * 16 * ROW, 2 * CHUNK);",
     "the N-major noun operand's second 64 columns read from the wrong chunk"),
    ("rt-n-major-sbo", "retrieve", "wgmma.cuh",
     "((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |\n           ((uint64_t)(1024 >> 4) << 32)",
     "((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |\n           ((uint64_t)(2048 >> 4) << 32)",
     "N-major k groups 2048 bytes apart instead of 1024"),
    ("rt-register-a-order", "retrieve", "retrieve_wgmma.cu",
     "const float p0 = s[8 * kk + 2 * q], p1 = s[8 * kk + 2 * q + 1];",
     "const float p0 = s[8 * kk + 2 * (q ^ 3)], p1 = s[8 * kk + 2 * (q ^ 3) + 1];",
     "the weights' registers in the wrong A-fragment order"),
    ("rt-pv-k-step", "retrieve", "retrieve_wgmma.cu",
     "kk * 16 * ROW, CHUNK);", "kk * 8 * ROW, CHUNK);",
     "P . T's k steps 8 nouns apart instead of 16"),
    ("rt-no-exchange", "retrieve", "retrieve_wgmma.cu",
     "            s[4 * r] += v.x;\n", "",
     "a logit that misses the other warpgroup's half of the columns"),
    ("rt-no-rescale", "retrieve", "retrieve_wgmma.cu",
     "                        o[ot][4 * nt + 2 * i] *= alpha;\n", "",
     "accumulators not rescaled when the row's max moves"),
    ("rt-one-half-norm", "retrieve", "retrieve_wgmma.cu",
     "const float tot = red[r] + red[BM + r];", "const float tot = red[half * BM + r] * 2.f;",
     "rows normalised by one half's norm"),
    ("rt-refill-early", "retrieve", "retrieve_wgmma.cu",
     "        if (tile + 1 < ntiles) load_tile(tile + 1);\n        cp_async_commit();\n        const uint32_t stage",
     "        cp_async_commit();\n        const uint32_t stage",
     "the next noun tile never loaded (its stage read unwritten)"),
    ("rt-cols-one-buffer", "retrieve", "retrieve_wgmma.cu",
     "cols[(tile & 1) * (BN / 2) + threadIdx.x] =", "cols[threadIdx.x] =",
     "the next tile's column scales overwrite the current ones"),
    ("rt-exp-scale", "retrieve", "retrieve_wgmma.cu",
     "float e0 = fmaf(s[4 * nt + 2 * i] * rs[i], c.x, c.y);", "float e0 = s[4 * nt + 2 * i] * rs[i] * c.x;",
     "the exponent without log2 of the noun's scale (the session-3 parity failure)"),
    ("rt-bf16-no-lo", "retrieve", "retrieve_wgmma.cu",
     "for (int pl = 0; pl < PPL; ++pl) WgmmaRegA", "for (int pl = 0; pl < 1; ++pl) WgmmaRegA",
     "bf16 weights without their lo part"),
    # k-means assignment, mma.sync (kmeans.cu)
    ("kmeans-mma-cp-async-wait", "kmeans_assign", "kmeans.cu",
     "cp_async_wait<STAGES - 2>();", "cp_async_wait<STAGES - 1>();",
     "mma.sync products on a chunk that has not landed"),
    # k-means update partial sums (kmeans.cu)
    ("sums-column-swap", "kmeans_sums", "kmeans.cu",
     "p.partial[(size_t)task * p.d + col0 + j] = s[j];",
     "p.partial[(size_t)task * p.d + col0 + (j ^ 1)] = s[j];",
     "a thread's columns written to each other's places"),
    ("sums-group-offset", "kmeans_sums", "kmeans.cu",
     "const int col0 = (blockIdx.y * SUM_THREADS + threadIdx.x) * SUM_COLS;",
     "const int col0 = blockIdx.y * SUM_THREADS + threadIdx.x * SUM_COLS;",
     "the second column group starts SUM_THREADS columns in, not SUM_THREADS * SUM_COLS"),
    ("sums-member-order", "kmeans_sums", "kmeans.cu",
     "for (int u = 0; u < SUM_UNROLL; ++u) {\n            if (m + u < e) {",
     "for (int u = SUM_UNROLL - 1; u >= 0; --u) {\n            if (m + u < e) {",
     "a group's members added in reverse order (f64 sums not those of index order)"),
    ("sums-tail-duplicate", "kmeans_sums", "kmeans.cu",
     "for (int u = 0; u < SUM_UNROLL; ++u) {\n            if (m + u < e) {",
     "for (int u = 0; u < SUM_UNROLL; ++u) {\n            if (m + u <= e) {",
     "the last member, read again past the task's end, added twice"),
    ("sums-write-past-d", "kmeans_sums", "kmeans.cu",
     "if (col0 + j < p.d) p.partial", "if (col0 + j < p.dp) p.partial",
     "partial sums written for the packing columns from d to dp"),
]

FLAGS = ["-std=c++20", "-O1", "-g", "-pthread", "-ffp-contract=off",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wno-unknown-pragmas"]


def build_and_run(kernels, driver, workdir):
    """Builds tests/kernel_emu/{driver}.cpp against `kernels`; returns (passed, first error line)."""
    binary = os.path.join(workdir, driver)
    cxx = os.environ.get("CXX", "c++")
    built = subprocess.run(
        [cxx, *FLAGS, "-I", kernels, "-I", os.path.join(ROOT, "tests/kernel_emu"),
         os.path.join(ROOT, "tests/kernel_emu", driver + ".cpp"), "-o", binary],
        capture_output=True, text=True)
    if built.returncode != 0:
        return False, "build failed: " + (built.stderr.strip().splitlines() or ["?"])[0]
    env = dict(os.environ, LAIC_EMU_BLOCK_TIMEOUT_S="120")
    try:
        ran = subprocess.run([binary], capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    if ran.returncode == 0:
        return True, ""
    # The first line that says something (not a passing case, not a sanitizer's rule of '=').
    lines = [l for l in (ran.stderr + ran.stdout).splitlines()
             if l.strip().strip("=") and not l.endswith(" ok")]
    return False, (lines or ["exit status %d" % ran.returncode])[0][:160]


def mutate(m, scratch):
    name, driver, path, old, new, _ = m
    work = os.path.join(scratch, name)
    kernels = os.path.join(work, "kernels")
    shutil.copytree(os.path.join(ROOT, "kernels"), kernels)
    source = open(os.path.join(kernels, path)).read()
    if source.count(old) != 1:
        return name, "NOT APPLIED", "%d occurrences of the source text in %s" % (source.count(old), path)
    open(os.path.join(kernels, path), "w").write(source.replace(old, new))
    passed, why = build_and_run(kernels, driver, work)
    if why.startswith("build failed"):
        return name, "NOT APPLIED", why
    return name, ("SURVIVED" if passed else "caught"), why


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or m[0] in args.names]
    unknown = set(args.names) - {m[0] for m in MUTATIONS}
    if unknown:
        sys.exit("unknown mutations: " + ", ".join(sorted(unknown)))
    with tempfile.TemporaryDirectory(prefix="laic-mutations-") as scratch:
        drivers = sorted({m[1] for m in chosen})
        with ThreadPoolExecutor(args.jobs) as pool:
            baseline = dict(zip(drivers, pool.map(
                lambda d: build_and_run(os.path.join(ROOT, "kernels"), d, tempfile.mkdtemp(dir=scratch)),
                drivers)))
        for driver, (passed, why) in baseline.items():
            if not passed:
                sys.exit("the unmutated %s driver fails (%s): fix that first" % (driver, why))
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda m: mutate(m, scratch), chosen))
    what = {m[0]: (m[1], m[5]) for m in MUTATIONS}
    print("| mutation | driver | breaks | result | first failure |")
    print("|---|---|---|---|---|")
    for name, result, why in results:
        print("| %s | %s | %s | %s | %s |" % (name, what[name][0], what[name][1], result,
                                             why.replace("|", "/")))
    missed = [r for r in results if r[1] != "caught"]
    print("\n%d of %d mutations caught" % (len(results) - len(missed), len(results)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
