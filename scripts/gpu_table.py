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
bench = [b for b in lines(os.path.join(out, "bench.jsonl")) if b.get("bench") == "gradnorm"]
torch = lines(os.path.join(out, "torch.jsonl"))
anchor = {}
for t in torch:
    if "ms" in t:
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
