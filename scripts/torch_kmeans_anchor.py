"""PyTorch timings of one spherical k-means iteration and of retrieval on the current GPU:
what a user would run instead of laic's CUDA k-means and retrieval kernels.

The code is ../shared/anchors/torch_anchors.py's (chunked argmax assignment + index_add_
update; F.normalize(softmax(X T^T / tau) T)), at the sizes of examples/gpu_bench_kmeans.rs.
One JSON line per measurement. Run by scripts/gpu-check.sh so that the ratios come from the
same card in the same call.

python3 scripts/torch_kmeans_anchor.py [--quick]
"""
import json
import sys

import torch
import torch.nn.functional as F

from torch_timing import median_ms

QUICK = "--quick" in sys.argv
D = 512


def emit(**kw):
    print(json.dumps(kw), flush=True)


def bench(fn, reps=5, warm=2):
    return median_ms(fn, reps, warm)


def unit(*shape):
    return F.normalize(torch.randn(*shape, device="cuda"), dim=-1)


torch.backends.cuda.matmul.allow_tf32 = False
emit(torch=torch.__version__, gpu=torch.cuda.get_device_name())

N, K = (65536, 2000) if QUICK else (1281167, 2000)
X = unit(N, D)
C = X[:: N // K][:K].clone()


def kmeans_iter(X, C):
    lab = torch.empty(N, dtype=torch.long, device="cuda")
    for i in range(0, N, 262144):
        lab[i:i + 262144] = (X[i:i + 262144] @ C.T).argmax(1)
    S = torch.zeros_like(C, dtype=torch.float32).index_add_(0, lab, X.float())
    return F.normalize(S, dim=1).to(C.dtype)


emit(anchor="eager", work="kmeans_iter", dtype="F32", n=N, k=K, ms=round(bench(lambda: kmeans_iter(X, C)), 4))
Xh, Ch = X.half(), C.half()
del X, C
torch.cuda.empty_cache()
emit(anchor="eager", work="kmeans_iter", dtype="F16", n=N, k=K, ms=round(bench(lambda: kmeans_iter(Xh, Ch)), 4))
del Xh, Ch
torch.cuda.empty_cache()

N, M = (4096, 10000) if QUICK else (50000, 10000)
Xh = unit(N, D).half()
Th = unit(M, D).half()
emit(anchor="eager", work="retrieve", dtype="F16", n=N, m=M,
     ms=round(bench(lambda: F.normalize(torch.softmax(Xh @ Th.T / 0.006, 1) @ Th, dim=1), reps=20, warm=3), 4))
