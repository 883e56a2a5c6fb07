"""Replays the fused CLIP attention kernel (`laic_clip_attention_*` in kernels/clip.cu) in NumPy,
written before the kernel ran on a GPU: its shared-memory layout as one flat array (NaN where
nothing was written; every read is bounds- and NaN-checked), the per-lane key slots with the
clamped rows, the base-2 softmax and the f16 rounding of the output, against an f64 reference,
on sequences of 1-128 tokens, heads of 12-96 columns, causal or not.

Usage: python scripts/emulate_clip_attention.py   (numpy; prints one line per case, fails on
an error above 2e-3 relative).
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
