"""Replays the fused CLIP attention kernels (kernels/clip_simt.cuh and clip.cu) in NumPy, written
before they ran on a GPU, against an f64 reference (the CUDA-core kernel's own source also runs
on the CPU in cargo test: tests/kernel_emu/clip_attention.cpp):
- `laic_clip_attention_*` (CUDA cores): its shared-memory layout as one flat array (NaN where
  nothing was written; every read is bounds- and NaN-checked), the per-lane key slots with the
  clamped rows, the base-2 softmax and the f16 rounding of the output;
- `laic_clip_attention_mma{8,16}_*` (tensor cores): every ldmatrix (plain and .trans) and
  mma.sync m16n8k16 per lane with the fragment layouts PTX defines, so the kernel's addressing,
  masking, quad reductions and the accumulator-to-A-fragment reuse are what is checked.
Sequences of 1-128 tokens, heads of 12-120 columns, causal or not.

Usage: python scripts/emulate_clip_attention.py   (numpy; one line per case, fails on an error
above 2e-3 (CUDA cores) or 4e-3 (tensor cores) relative).
"""
import numpy as np
MAX_SEQ, SLOTS = 128, 4

def kernel(qkv, batch, seq, width, heads, causal, dt):
    hd = width // heads
    ld = ((hd + 31) & ~31) + 4
    nw = 2 if seq <= 32 else 4
    smem_floats = 2 * seq * ld + nw * (ld + MAX_SEQ)
    out = np.full((batch * seq, width + 8), np.nan, np.float32)
    scale = np.float32(np.log2(np.e) / np.sqrt(hd))
    for blk in range(batch * heads):
        sm = np.full(smem_floats, np.nan, np.float32)
        b, h = blk // heads, blk % heads
        ks, vs, qs, ps = 0, seq * ld, 2 * seq * ld, 2 * seq * ld + nw * ld
        hd4 = (hd + 3) >> 2
        hdp = hd4 * 4
        for idx in range(seq * hdp):
            j, d = divmod(idx, hdp)
            row = qkv[b * seq + j]
            sm[ks + j * ld + d] = row[width + h * hd + d] if d < hd else 0
            if d < hd:
                sm[vs + j * ld + d] = row[2 * width + h * hd + d]
        lanes = np.arange(32)
        for warp in range(nw):
            q, p = qs + warp * ld, ps + warp * MAX_SEQ
            for i in range(warp, seq, nw):
                qrow = qkv[b * seq + i]
                for d in range(hdp):
                    sm[q + d] = np.float32(qrow[h * hd + d]) * scale if d < hd else 0
                live = i + 1 if causal else seq
                slots = (live + 31) >> 5
                s = np.zeros((SLOTS, 32), np.float32)
                for t in range(SLOTS):
                    if t < slots:
                        j = np.minimum(lanes + 32 * t, seq - 1)
                        for c in range(hd4):
                            kidx = ks + j[:, None] * ld + 4 * c + np.arange(4)
                            assert (kidx < vs).all()
                            kv = sm[kidx]
                            qv = sm[q + 4 * c + np.arange(4)]
                            assert not np.isnan(kv).any() and not np.isnan(qv).any()
                            s[t] += (kv * qv).sum(1)
                valid = (lanes[None, :] + 32 * np.arange(SLOTS)[:, None]) < live
                m = s[valid].max()
                e = np.where(valid, np.exp2(s - m), 0).astype(np.float32)
                inv = np.float32(1) / e.sum()
                for t in range(SLOTS):
                    for l in range(32):
                        if valid[t, l]:
                            assert l + 32 * t < MAX_SEQ
                            sm[p + l + 32 * t] = e[t, l] * inv
                for d in range(hd):
                    js = np.arange(live)
                    o = (sm[p + js] * sm[vs + js * ld + d]).sum()
                    out[b * seq + i, h * hd + d] = dt(o)
    return out[:, :width]

def reference(qkv, batch, seq, width, heads, causal):
    hd = width // heads
    x = qkv.astype(np.float64).reshape(batch, seq, 3, heads, hd)
    q, k, v = x[:, :, 0], x[:, :, 1], x[:, :, 2]
    s = np.einsum("bihd,bjhd->bhij", q, k) / np.sqrt(hd)
    if causal:
        s = np.where(np.tril(np.ones((seq, seq), bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return np.einsum("bhij,bjhd->bihd", s, v).reshape(batch * seq, width)

rng = np.random.default_rng(1)
for batch, seq, width, heads, causal in [(2, 1, 64, 1, True), (3, 10, 128, 2, True),
        (2, 33, 128, 2, False), (1, 50, 192, 3, False), (1, 77, 160, 2, True),
        (1, 128, 64, 1, False), (2, 32, 96, 1, True), (2, 17, 52, 4, False), (3, 12, 36, 3, True), (1, 101, 26, 2, False)]:
    qkv = (rng.standard_normal((batch * seq, 3 * width)) * 2).astype(np.float16).astype(np.float32)
    got = kernel(qkv, batch, seq, width, heads, causal, lambda v: np.float32(np.float16(v)))
    want = reference(qkv, batch, seq, width, heads, causal)
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"batch {batch} seq {seq} width {width} heads {heads} causal {causal}: max rel {err:.2e}")
    assert err < 2e-3


# ---- The tensor-core kernel (attention_mma): ldmatrix and mma.sync fragments per lane, as
# PTX defines them, so that the kernel's addressing is what gets checked. ----
LANES = np.arange(32)
G, T4, MI = LANES >> 2, LANES & 3, LANES >> 3


def ldmatrix_x4(sm, addr, trans=False):
    """addr[l]: element index of the row lane l supplies. Returns regs[l, j, e] (j: matrix)."""
    rows = np.stack([sm[addr[8 * j + r] + np.arange(8)] for j in range(4) for r in range(8)])
    rows = rows.reshape(4, 8, 8)  # matrix, row, column
    assert not np.isnan(rows).any()
    if trans:  # lane l gets (row 2t + e, column g)
        return np.stack([rows[j][2 * T4[:, None] + np.arange(2), G[:, None]] for j in range(4)], 1)
    return np.stack([rows[j][G[:, None], 2 * T4[:, None] + np.arange(2)] for j in range(4)], 1)


def mma(d, a, b0, b1):
    """d[l, 4] += A(16x16 from a[l, 4, 2]) . B(16x8 from b0, b1 [l, 2])."""
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for l in range(32):
        g, t = G[l], T4[l]
        A[g, 2 * t:2 * t + 2], A[g + 8, 2 * t:2 * t + 2] = a[l, 0], a[l, 1]
        A[g, 2 * t + 8:2 * t + 10], A[g + 8, 2 * t + 8:2 * t + 10] = a[l, 2], a[l, 3]
        B[2 * t:2 * t + 2, g], B[2 * t + 8:2 * t + 10, g] = b0[l], b1[l]
    C = A @ B
    for l in range(32):
        g, t = G[l], T4[l]
        d[l] += [C[g, 2 * t], C[g, 2 * t + 1], C[g + 8, 2 * t], C[g + 8, 2 * t + 1]]


def kernel_mma(qkv, batch, seq, width, heads, causal, rnd, NT):
    hd = width // heads
    hdp, sp = (hd + 15) & ~15, (seq + 15) & ~15
    ld = hdp + 8
    assert hdp <= 8 * NT
    out = np.full((batch * seq, width), np.nan, np.float32)
    scale = np.float32(np.log2(np.e) / np.sqrt(hd))
    for blk in range(batch * heads):
        b, h = blk // heads, blk % heads
        sm = np.full(3 * sp * ld, np.nan)
        qs, ks, vs = 0, sp * ld, 2 * sp * ld
        for j in range(sp):
            for d in range(hdp):
                live = j < seq and d < hd
                row = qkv[b * seq + j] if j < seq else None
                for base, off in ((qs, 0), (ks, width), (vs, 2 * width)):
                    sm[base + j * ld + d] = row[off + h * hd + d] if live else 0
        for mt in range(sp >> 4):
            r0 = mt << 4
            nk = ((min(seq, r0 + 16) if causal else seq) + 15) >> 4
            s = np.zeros((ATT_KCH, 2, 32, 4))
            for kc in range(hdp >> 4):
                a = ldmatrix_x4(sm, qs + (r0 + (LANES & 15)) * ld + kc * 16 + (LANES >> 4) * 8)
                for c in range(nk):
                    bk = ldmatrix_x4(sm, ks + (c * 16 + (MI >> 1) * 8 + (LANES & 7)) * ld
                                     + kc * 16 + (MI & 1) * 8)
                    mma(s[c, 0], a, bk[:, 0], bk[:, 1])
                    mma(s[c, 1], a, bk[:, 2], bk[:, 3])
            s = s.astype(np.float32)
            e = np.arange(4)
            m = np.full((32, 2), -np.inf, np.float32)
            for c in range(nk):
                for n in range(2):
                    key = c * 16 + n * 8 + 2 * T4[:, None] + (e & 1)
                    row = r0 + G[:, None] + (e >> 1) * 8
                    live = (key < seq) & (~causal | (key <= row))
                    s[c, n] = np.where(live, s[c, n] * scale, -np.inf)
                    for i in range(2):
                        m[:, i] = np.maximum(m[:, i], s[c, n][:, 2 * i:2 * i + 2].max(1))
            m = np.repeat(m.reshape(8, 4, 2).max(1), 4, 0)  # quad max
            l_ = np.zeros((32, 2), np.float32)
            for c in range(nk):
                for n in range(2):
                    s[c, n] = np.exp2(s[c, n] - m[:, e >> 1])
                    for i in range(2):
                        l_[:, i] += s[c, n][:, 2 * i:2 * i + 2].sum(1)
            l_ = np.repeat(l_.reshape(8, 4, 2).sum(1), 4, 0)  # quad sum
            o = np.zeros((NT, 32, 4))
            for c in range(nk):
                a = rnd(np.stack([s[c, 0][:, 0:2], s[c, 0][:, 2:4], s[c, 1][:, 0:2],
                                  s[c, 1][:, 2:4]], 1))
                for dc in range(hdp >> 4):
                    bv = ldmatrix_x4(sm, vs + (c * 16 + (MI & 1) * 8 + (LANES & 7)) * ld
                                     + dc * 16 + (MI >> 1) * 8, trans=True)
                    mma(o[2 * dc], a, bv[:, 0], bv[:, 1])
                    mma(o[2 * dc + 1], a, bv[:, 2], bv[:, 3])
            for lane in range(32):
                for i in range(2):
                    row = r0 + G[lane] + 8 * i
                    if row >= seq:
                        continue
                    for n in range(NT):
                        for e2 in range(2):
                            d = n * 8 + 2 * T4[lane] + e2
                            if d < hd:
                                out[b * seq + row, h * hd + d] = rnd(
                                    np.float32(o[n, lane, 2 * i + e2]) / l_[lane, i])
    return out


ATT_KCH = MAX_SEQ // 16
f16 = lambda v: np.asarray(v, np.float32).astype(np.float16).astype(np.float32)
for batch, seq, width, heads, causal in [(2, 1, 64, 1, True), (2, 10, 128, 2, True),
        (1, 33, 128, 2, False), (1, 50, 128, 2, False), (1, 77, 64, 1, True),
        (1, 128, 64, 1, True), (2, 17, 52, 4, False), (2, 12, 36, 3, True), (1, 20, 240, 2, False)]:
    qkv = f16(rng.standard_normal((batch * seq, 3 * width)) * 2)
    NT = 8 if ((width // heads + 15) & ~15) <= 64 else 16
    got = kernel_mma(qkv, batch, seq, width, heads, causal, f16, NT)
    want = reference(qkv, batch, seq, width, heads, causal)
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"mma{NT}: batch {batch} seq {seq} width {width} heads {heads} causal {causal}: "
          f"max rel {err:.2e}")
    assert err < 4e-3
