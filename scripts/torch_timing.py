"""Median CUDA-event time of a PyTorch callable: the one timing rule of the PyTorch anchors that
scripts/gpu-check.sh runs beside laic (torch_gradnorm_anchor.py, torch_kmeans_anchor.py,
clip_torch_gpu_bench.py), so that every ratio it prints is measured the same way."""
import torch


def median_ms(fn, reps, warm=2):
    """Runs `fn` `warm` times, then `reps` times between CUDA events; the median in ms."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]
