"""Prints the table of scripts/gpu-check.sh from the JSON lines it collected in a folder:
bench.jsonl (examples/gpu_bench.rs) and torch.jsonl (scripts/torch_gradnorm_anchor.py).
Ratios are PyTorch time / laic kernel time (above 1: laic is faster), same card, same call.

python3 scripts/gpu_table.py OUT_DIR
"""
import json
import os
import sys


def lines(path):
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


out = sys.argv[1]
all_bench = lines(os.path.join(out, "bench.jsonl"))
bench = [b for b in all_bench if b.get("bench") == "gradnorm"]
torch = lines(os.path.join(out, "torch.jsonl"))
anchor = {}
for t in torch:
    if "ms" in t and "work" not in t:
        anchor[(t["anchor"], t["dtype"], t["m"], t["k"])] = t["ms"]

print()
tests = os.path.join(out, "tests.txt")
if os.path.exists(tests):
    print(open(tests).read().strip())
hdr = "| dtype | M | K | D | label/config | kernel ms | call ms | TFLOP/s | eager ms | x eager | compile ms | x compile | max rel err | assign diff |"
print(hdr)
print("|" + "---|" * (hdr.count("|") - 1))
for b in bench:
    if "error" in b:
        print(f"| {b['dtype']} | {b['m']} | {b['k']} | - | {b['label']} | error: {b['error']} |")
        continue
    fam = "F32" if b["dtype"] == "F32" else "F16"
    eager = anchor.get(("eager", fam, b["m"], b["k"]))
    comp = anchor.get(("compile", fam, b["m"], b["k"]))
    r = lambda a: f"{a / b['kernel_ms']:.2f}" if a else "-"
    f = lambda a: f"{a:.3f}" if a else "-"
    print(
        f"| {b['dtype']} | {b['m']} | {b['k']} | {b['d']} | {b['label']}/{b['config']} | {b['kernel_ms']:.3f} | "
        f"{b['call_ms']:.3f} | {b['tflops']} | {f(eager)} | {r(eager)} | {f(comp)} | {r(comp)} | "
        f"{b['max_rel_err']:.1e} | {b['assign_mismatch']}/{b['checked_rows']} |"
    )
if not bench:
    print("(no benchmark results: see bench.err)")

# Issue 8: k-means iteration and retrieval (examples/gpu_bench_kmeans.rs vs
# scripts/torch_kmeans_anchor.py). Ratio = PyTorch eager ms / laic kernel ms.
work_anchor = {}
for t in torch:
    if "ms" in t and "work" in t:
        work_anchor[(t["work"], t["dtype"], t["n"], t.get("k", t.get("m")))] = t["ms"]
print()
hdr = "| work | dtype | N | K or M | D | kernel ms | (assign / sums) | call ms | TFLOP/s | eager ms | x eager | error vs CPU |"
print(hdr)
print("|" + "---|" * (hdr.count("|") - 1))
rows = 0
for b in all_bench:
    if b.get("bench") not in ("kmeans_iter", "retrieve"):
        continue
    rows += 1
    if "error" in b:
        print(f"| {b['bench']} | {b['dtype']} | error: {b['error']} |")
        continue
    km = b["bench"] == "kmeans_iter"
    second = b["k"] if km else b["m"]
    eager = work_anchor.get((b["bench"], b["dtype"], b["n"], second))
    ratio = f"{eager / b['kernel_ms']:.2f}" if eager else "-"
    parts = f"{b['assign_ms']:.3f} / {b['sums_ms']:.3f}" if km else "-"
    tf = b.get("assign_tflops", b.get("tflops"))
    err = (
        f"dist {b['max_abs_dist_err']:.1e}, labels {b['assign_mismatch']}/{b['checked_rows']} differ"
        if km
        else f"{b['max_rel_err']:.1e}"
    )
    print(
        f"| {b['bench']} | {b['dtype']} | {b['n']} | {second} | {b['d']} | {b['kernel_ms']:.3f} | {parts} | "
        f"{b['call_ms']:.2f} | {tf} | {eager if eager else '-'} | {ratio} | {err} |"
    )
if not rows:
    print("(no k-means/retrieval benchmark results: see bench.err)")
