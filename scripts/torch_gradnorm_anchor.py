"""PyTorch GradNorm timings on the current GPU: what a user would run instead of laic.

Eager code as ../shared/anchors/torch_anchors.py writes it (softmax over centres, closed form
||p - onehot||_2 * ||t||_2), and the same function under torch.compile, at the sizes of
examples/gpu_bench.rs. One JSON line per measurement. Run by scripts/gpu-check.sh so that the
ratios it prints come from the same card in the same call.

python3 scripts/torch_gradnorm_anchor.py [--quick]
"""
import json
import sys

import torch
import torch.nn.functional as F

from torch_timing import median_ms

QUICK = "--quick" in sys.argv
M = 16384 if QUICK else 146347
D = 512
TAU = 0.02


def emit(**kw):
    print(json.dumps(kw), flush=True)


def bench(fn, reps=20, warm=3):
    return median_ms(fn, reps, warm)


def gradnorm(T, W, tau: float):
    p = torch.softmax((T @ W.T).float() / tau, dim=1)
    pmax, arg = p.max(dim=1)
    s = ((p * p).sum(1) - pmax * pmax + (1 - pmax) ** 2).clamp_min(0).sqrt() * T.float().norm(dim=1)
    return s, arg


def unit(*shape, dtype):
    return F.normalize(torch.randn(*shape, device="cuda"), dim=-1).to(dtype)


torch.backends.cuda.matmul.allow_tf32 = False
emit(torch=torch.__version__, gpu=torch.cuda.get_device_name())
compiled = torch.compile(gradnorm)
for k in (2000, 4271):
    T = unit(M, D, dtype=torch.float16)
    W = unit(k, D, dtype=torch.float16)
    emit(anchor="eager", dtype="F16", m=M, k=k, ms=round(bench(lambda: gradnorm(T, W, TAU)), 4))
    try:
        emit(anchor="compile", dtype="F16", m=M, k=k, ms=round(bench(lambda: compiled(T, W, TAU)), 4))
    except Exception as e:  # a broken inductor install must not hide the other numbers
        emit(anchor="compile", dtype="F16", m=M, k=k, error=repr(e)[:200])
    T = T.float()
    W = W.float()
    emit(anchor="eager", dtype="F32", m=M, k=k, ms=round(bench(lambda: gradnorm(T, W, TAU)), 4))
    del T, W
    torch.cuda.empty_cache()
