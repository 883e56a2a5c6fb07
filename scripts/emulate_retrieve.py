#!/usr/bin/env python3
"""NumPy emulation of kernels/retrieve.cu's main retrieval kernel, against an f64 reference.

Written to debug issue 8's parity failure without a GPU (kernels/NOTES.md, "retrieve.cu"):
it replays the kernel's algorithm step by step on the inputs of
tests/cuda_kmeans.rs `retrieval_matches_the_cpu` and prints, per case, the largest L2
distance between its unit output rows and those of the f64 reference
normalize(softmax(x̂·t̂ᵀ/τ)·t̂) (x̂, t̂ the L2-normalised rows when normalising).

What it reproduces from the kernel:
- packing (operands.cuh): f16 / bf16 input as one operand plane with per row 1/‖row‖ from an
  f32 sum of squares (or 1); f32 input as bf16 hi + lo of the raw rows (`raw`, `lns`) or as
  unit rows in f16 hi + lo with row value 1 or ‖row‖ (`fixed`); the images' value times
  log2(e)/τ; rows padded to the block and tile multiples, columns to a multiple of 64;
- the block shape the host picks (src/backend/cuda/retrieve.rs `plan`, H100 shared memory);
- per block of BM images and noun tile of BN = 32: the logits of the tile as f32 sums of exact
  operand products (three products hi·hi + hi·lo + lo·hi for f32 input), scaled after the
  product, padding nouns masked to -inf;
- the four column warps: each forms the logits of 8 nouns of the tile, the tile row maxima are
  exchanged (max over the four warps and the running max), then each warp writes its weights
  p = 2^(e − m) rounded to the weight operand (f16 for f16 input, bf16 hi + lo for bf16
  input; bf16 or, `fixed`, f16 hi + lo for f32 input),
  rescales ITS accumulator columns (a quarter of dp) by 2^(m_old − m_new) and adds P·T over its
  columns (P the whole tile's weights, T the tile's packed noun operands);
- the final row norm as the sum of the four warps' partial sums of squares (f32), rsqrt, write.

Variants (`--variant`, default all three):
- `raw`: the kernel as it failed on the H200: P·T summed the packed noun rows as given, so
  with normalisation each noun's weight was off by its norm;
- `lns`: that fixed alone: the weight of noun j is 2^(z_j + log2(s_j) − m') with s_j the
  factor from packed row to softmax row (1/‖t_j‖, or 1 without normalisation) and m' the
  running max of z + log2(s), so the accumulator sums 2^(z_j)·t̂_j up to a common factor;
  f32 input still split into bf16 hi + lo of the raw rows (16 bits: ~1e-4 at τ = 0.01, D = 64);
- `fixed`: the kernel now: `lns`, and f32 input packed as unit rows in f16 hi + lo
  (operands.cuh `pack_unit_body`; row values 1 or ‖row‖, so s_j = 1 or ‖t_j‖), with the
  weights of f32 input in f16 hi + lo.

Not emulated (below the tolerances): the mma accumulation order (f32 sums here are of f64
products rounded once per tile) and ex2.approx's 2^-22 relative error.

Usage: /work/venv-ref/bin/python scripts/emulate_retrieve.py [--variant raw|lns|fixed|all]
       [--seed S] [--cases all|failing]
"""

import argparse

import numpy as np

LOG2E = 1.4426950408889634
BN = 32  # nouns per tile
WC = 4  # column warps
PAD = 8
COL_MULTIPLE = 64
ROW_MULTIPLE = 64  # images are packed to a multiple of the largest block
TBN = 64  # nouns are packed to a multiple of the top kernel's tile
SMEM = 227 * 1024
CONFIGS = [(2, 2, 512), (2, 1, 512), (1, 2, 1024), (1, 1, 1024)]  # (MT, WR, max dp)


def round_up(x, to):
    return -(-x // to) * to


def bf16(x):
    """Round f32 values to bf16 (nearest, ties to even), returned as f32."""
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def as_dtype(x, dtype):
    """The input matrix as the caller stores it (rounded once from f32), as f32."""
    if dtype == "f32":
        return x.astype(np.float32)
    return f16(x) if dtype == "f16" else bf16(x)


def planes(v, dtype):
    """Operand planes of the packed values (f32 input: bf16 hi + lo)."""
    if dtype == "f32":
        hi = bf16(v)
        return [hi, bf16(v - hi)]
    return [v]  # f16 and bf16 input enter as they are


def weight_planes(p, dtype, variant):
    """Operand planes of the weights: f16 for f16 input, bf16 hi + lo for bf16 input, and for
    f32 input bf16 hi + lo (raw, lns) or f16 hi + lo (fixed)."""
    p = p.astype(np.float32)
    if dtype == "f16":
        return [f16(p)]
    r = f16 if (dtype == "f32" and variant == "fixed") else bf16
    hi = r(p)
    return [hi, r(p - hi)]


def plan(dtype, d):
    dp = round_up(d, COL_MULTIPLE)
    xpl = 2 if dtype == "f32" else 1
    ppl = 1 if dtype == "f16" else 2
    for mt, wr, maxd in CONFIGS:
        if dp > maxd:
            continue
        bm = wr * mt * 16
        smem = (xpl * bm * (dp + PAD) * 2 + 2 * xpl * BN * (dp + PAD) * 2
                + ppl * bm * (BN + PAD) * 2 + WC * bm * 4)
        if smem <= SMEM:
            return bm, dp
    raise ValueError("no shape fits")


def pack_unit(x, rows_padded, dp, normalize, scale):
    """operands.cuh pack_unit_body: f32 rows scaled to unit norm, f16 hi + lo; value 1 or ‖x‖."""
    n, d = x.shape
    v = np.zeros((rows_padded, dp), np.float32)
    v[:n, :d] = x
    amax = np.abs(v).max(axis=1)
    s = np.where(amax >= np.finfo(np.float32).tiny, np.float32(1) / np.maximum(amax, 1e-38), 0)
    s = s.astype(np.float32)
    w = (v * s[:, None]).astype(np.float32)
    ss = np.einsum("ij,ij->i", w, w, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ss > 0, s / np.sqrt(ss), 0).astype(np.float32)
    u = (v * inv[:, None]).astype(np.float32)
    hi = f16(u)
    rv = np.ones(rows_padded, np.float32) if normalize else (amax * np.sqrt(ss)).astype(np.float32)
    rv[n:] = 0
    return [hi, f16(u - hi)], (rv * np.float32(scale)).astype(np.float32)


def pack(x, rows_padded, dp, dtype, normalize, scale, variant):
    if dtype == "f32" and variant == "fixed":
        return pack_unit(x, rows_padded, dp, normalize, scale)
    n, d = x.shape
    v = np.zeros((rows_padded, dp), np.float32)
    v[:n, :d] = x
    ss = np.einsum("ij,ij->i", v, v, dtype=np.float32)  # f32 sums, as the warp's
    if normalize:
        with np.errstate(divide="ignore"):
            rv = np.where(ss > 0, np.float32(1) / np.sqrt(ss), np.float32(0)).astype(np.float32)
    else:
        rv = np.ones(rows_padded, np.float32)
    rv[n:] = 0
    return planes(v, dtype), (rv * np.float32(scale)).astype(np.float32)


def mma(a_planes, b_planes):
    """f32 result of the tensor-core products: a·b, or hi·hi + hi·lo + lo·hi for two planes."""
    a = [p.astype(np.float64) for p in a_planes]
    b = [p.astype(np.float64) for p in b_planes]
    s = a[0] @ b[0]
    if len(b) == 2:
        s = s + a[0] @ b[1]
    if len(a) == 2:
        s = s + a[1] @ b[0]
    return s.astype(np.float32)


def kernel(x, t, tau, normalize, dtype, variant):
    n, d = x.shape
    m = t.shape[0]
    bm, dp = plan(dtype, d)
    np_, mp = round_up(n, ROW_MULTIPLE), round_up(m, TBN)
    xs, rs = pack(x, np_, dp, dtype, normalize, np.float32(LOG2E / tau), variant)
    ts, ns = pack(t, mp, dp, dtype, normalize, 1.0, variant)
    with np.errstate(divide="ignore"):
        lns = np.log2(ns).astype(np.float32)  # log2f(0) = -inf
    out = np.zeros((n, d), np.float32)
    q = dp // WC  # output columns of a column warp
    for row0 in range(0, np_, bm):
        rows = slice(row0, row0 + bm)
        xb = [p[rows] for p in xs]
        mx = np.full(bm, -np.inf, np.float32)
        o = np.zeros((bm, dp), np.float32)  # o[:, wc*q:(wc+1)*q] belongs to warp wc
        for tile in range(mp // BN):
            cols = slice(tile * BN, (tile + 1) * BN)
            tt = [p[cols] for p in ts]
            # Logits: warp wc forms nouns wc*8 .. wc*8+7 of the tile.
            z = np.empty((bm, BN), np.float32)
            red = np.empty((WC, bm), np.float32)
            for wc in range(WC):
                c = slice(wc * 8, wc * 8 + 8)
                s = mma(xb, [p[c].T for p in tt])
                j = tile * BN + wc * 8 + np.arange(8)
                zz = (s * rs[rows, None]).astype(np.float32)
                if variant != "raw":  # one fmaf: s·rs·ns + log2(ns)
                    zz = zz.astype(np.float64) * ns[None, j] + lns[None, j]
                else:
                    zz = zz * ns[None, j]
                zz = np.where(j[None, :] < m, zz, -np.inf).astype(np.float32)
                z[:, c] = zz
                red[wc] = zz.max(axis=1)
            # Every warp: the new max from the exchanged tile maxima, its weights, its rescale.
            mnew = np.maximum(mx, red.max(axis=0))
            msafe = np.where(mnew == -np.inf, 0, mnew).astype(np.float32)
            alpha = np.exp2(mx - msafe).astype(np.float32)
            mx = mnew
            p = np.exp2(z - msafe[:, None]).astype(np.float32)
            pw = weight_planes(p, dtype, variant)
            for wc in range(WC):
                oc = slice(wc * q, (wc + 1) * q)
                o[:, oc] = o[:, oc] * alpha[:, None]
                o[:, oc] = o[:, oc] + mma(pw, [p_[:, oc] for p_ in tt])
        # Norms: each warp's partial sum of squares, summed over the four warps.
        part = np.stack([np.einsum("ij,ij->i", o[:, w * q:(w + 1) * q], o[:, w * q:(w + 1) * q],
                                   dtype=np.float32) for w in range(WC)])
        tot = part.sum(axis=0, dtype=np.float32)
        inv = np.where(tot > 0, np.float32(1) / np.sqrt(tot), 0).astype(np.float32)
        r = min(bm, n - row0)
        if r > 0:
            out[row0:row0 + r] = (o[:r, :d] * inv[:r, None]).astype(np.float32)
    return out


def reference(x, t, tau, normalize):
    x = x.astype(np.float64)
    t = t.astype(np.float64)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        t = t / np.linalg.norm(t, axis=1, keepdims=True)
    z = x @ t.T / tau
    w = np.exp(z - z.max(axis=1, keepdims=True))
    a = w @ t
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def inputs(rng, n, m, d, normalize, spread):
    """As the Rust test: N(0, 1) rows, or unit rows times 1.1 (images) / 0.9 (nouns); with
    `spread`, every row then times 2^u, u uniform in [-2, 2) (norms 16x apart)."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    t = rng.standard_normal((m, d)).astype(np.float32)
    if not normalize:
        x = (x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
        t = (t / np.linalg.norm(t.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
        x *= np.float32(1.1)
        t *= np.float32(0.9)
    if spread:
        x *= np.exp2(rng.uniform(-2, 2, (n, 1))).astype(np.float32)
        t *= np.exp2(rng.uniform(-2, 2, (m, 1))).astype(np.float32)
    return x, t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=["raw", "lns", "fixed", "all"], default="all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", choices=["all", "failing"], default="all")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    variants = ["raw", "lns", "fixed"] if args.variant == "all" else [args.variant]
    sizes = [(333, 1001, 64), (130, 517, 512), (65, 300, 768), (1, 1, 64), (70, 33, 64)]
    taus = [(0.01, True, False), (0.05, True, False), (0.02, False, False),
            (0.006, True, False), (0.01, True, True), (0.1, False, True)]
    if args.cases == "failing":
        sizes, taus = sizes[:2], taus[:1]
    for n, m, d in sizes:
        for dtype in ["f32", "f16", "bf16"]:
            for tau, normalize, spread in taus:
                if dtype == "f32" and round_up(d, COL_MULTIPLE) > 512:
                    continue  # runs on the CPU
                x, t = inputs(rng, n, m, d, normalize, spread)
                x, t = as_dtype(x, dtype), as_dtype(t, dtype)
                ref = reference(x, t, tau, normalize)
                tol = 1e-4 if dtype == "f32" else 2e-3
                errs = []
                for v in variants:
                    g = kernel(x, t, tau, normalize, dtype, v)
                    e = np.sqrt(((g.astype(np.float64) - ref) ** 2).sum(axis=1)).max()
                    errs.append(f"{v} {e:.2e}{' FAIL' if e > tol else ''}")
                print(f"{dtype:4} n={n:3} m={m:4} d={d:3} tau={tau:<5} normalize={normalize!s:5}"
                      f" spread={spread!s:5}"
                      f" tol {tol:.0e}: " + ", ".join(errs), flush=True)


if __name__ == "__main__":
    main()
