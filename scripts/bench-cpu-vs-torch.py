"""PyTorch CPU timings of the work laic's CPU benchmarks measure, for same-run ratios
(as ../shared/anchors/cpu_anchors.py, which measured the anchors). Needs torch in a throwaway
venv; laic does not depend on it. Usage: python scripts/bench-cpu-vs-torch.py [gradnorm|kmeans|retrieve]...
Run `cargo bench --bench gradnorm` (and kmeans, retrieve) right before or after on the same machine;
for the two large ones `LAIC_BENCH_QUICK=3 cargo bench --bench kmeans --bench retrieve` times three
runs each without criterion's ten samples, printing wall and CPU seconds and the load average."""
import json, os, sys, time
import torch

def med(fn, reps=3):
    fn(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1e3

def n(x): return torch.nn.functional.normalize(x, dim=-1)
torch.manual_seed(0)
D = 512
what = sys.argv[1:] or ["gradnorm"]
print(json.dumps({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                  "loadavg_1min": round(os.getloadavg()[0], 2)}), flush=True)
if "gradnorm" in what:
    M, K = 146347, 2000
    T = n(torch.randn(M, D)); W = n(torch.randn(K, D))
    def gn():
        p = torch.softmax(T @ W.T / 0.02, 1); pm, a = p.max(1)
        return ((p * p).sum(1) - pm * pm + (1 - pm) ** 2).sqrt(), a
    print(json.dumps({f"cpu_torch_gradnorm_M{M}_K{K}_ms": round(med(gn), 1)}), flush=True)
if "retrieve" in what:
    N, Ms = 50000, 10000
    X = n(torch.randn(N, D)); S = n(torch.randn(Ms, D))
    print(json.dumps({f"cpu_torch_retrieve_N{N}_M{Ms}_ms": round(med(lambda: n(torch.softmax(X @ S.T / 0.006, 1) @ S)), 1)}), flush=True)
if "kmeans" in what:
    N, K = 200000, 500
    X = n(torch.randn(N, D)); C = n(torch.randn(K, D))
    def km():
        lab = (X @ C.T).argmax(1)
        return n(torch.zeros(K, D).index_add_(0, lab, X))
    print(json.dumps({f"cpu_torch_kmeans_iter_N{N}_K{K}_ms": round(med(km), 1)}), flush=True)
