"""Prints the table of scripts/gpu-check.sh from the JSON lines it collected in a folder:
bench.jsonl (examples/gpu_bench.rs) and torch.jsonl (scripts/torch_gradnorm_anchor.py);
clip.jsonl (examples/clip_gpu_bench.rs) and clip_torch.jsonl (scripts/clip_torch_gpu_bench.py).
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
    # The diagnostic halves of wg2 (no fold / no products): time only, their scores are garbage.
    diag = b["config"] in ("wg2nofold", "wg2nomma")
    err = "diagnostic" if diag else f"{b['max_rel_err']:.1e}"
    mism = "-" if diag else f"{b['assign_mismatch']}/{b['checked_rows']}"
    print(
        f"| {b['dtype']} | {b['m']} | {b['k']} | {b['d']} | {b['label']}/{b['config']} | {b['kernel_ms']:.3f} | "
        f"{b['call_ms']:.3f} | {b['tflops']} | {f(eager)} | {r(eager)} | {f(comp)} | {r(comp)} | "
        f"{err} | {mism} |"
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
    if b.get("bench") not in ("kmeans_iter", "kmeans_lloyd", "kmeans_seed", "retrieve"):
        continue
    rows += 1
    if "error" in b:
        print(f"| {b['bench']} | {b['dtype']} | error: {b['error']} |")
        continue
    if b["bench"] == "kmeans_seed":
        # k-means++ seeding (no PyTorch anchor): total wall time in the call ms column.
        same = "" if b["loop"] == "host" else f", same seeds as the host loop: {b['same_as_host']}"
        print(
            f"| k-means++ seeding [{b.get('label', '')}: {b['loop']} loop] | {b['dtype']} | {b['n']} | "
            f"{b['k']} | {b['d']} | - | - | {b['ms']:.1f} | - | - | - | {same.lstrip(', ') or '-'} |"
        )
        continue
    if b["bench"] == "kmeans_lloyd":
        # Whole Lloyd iterations (wall time per iteration) against PyTorch's iteration.
        eager = work_anchor.get(("kmeans_iter", b["dtype"], b["n"], b["k"]))
        ratio = f"{eager / b['ms_per_iter']:.2f}" if eager else "-"
        print(
            f"| lloyd iteration [{b.get('label', '')}: {b['loop']} loop, {b['iterations']} its] | {b['dtype']} | "
            f"{b['n']} | {b['k']} | {b['d']} | - | - | {b['ms_per_iter']:.2f} | - | "
            f"{eager if eager else '-'} | {ratio} | objective {b['objective']:.1f} |"
        )
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
    work = b["bench"]
    if km and "assign_kernel" in b:
        work += f" [{b.get('label', '')}: {b['assign_kernel']}]"
    elif not km and "kernel" in b:
        work += f" [{b.get('label', '')}: {b['kernel']}]"
    print(
        f"| {work} | {b['dtype']} | {b['n']} | {second} | {b['d']} | {b['kernel_ms']:.3f} | {parts} | "
        f"{b['call_ms']:.2f} | {tf} | {eager if eager else '-'} | {ratio} | {err} |"
    )
if not rows:
    print("(no k-means/retrieval benchmark results: see bench.err)")

# CLIP: laic vs PyTorch + transformers fp16, same card, same call; one set of rows per laic
# variant (the device string names the operand type and the fused attention when on).
clip_all = lines(os.path.join(out, "clip.jsonl"))
clip = [c for c in clip_all if c.get("bench") == "clip"]
fold = [c for c in clip_all if c.get("bench") == "clip_folder"]
ct = {c.get("what"): c for c in lines(os.path.join(out, "clip_torch.jsonl"))}
if clip or ct:
    print()
    print("| CLIP ViT-B/32 (random) | laic | PyTorch fp16 | laic / PyTorch |")
    print("|---|---|---|---|")
    variants = []
    for c in clip:
        if c.get("device") not in variants and not c.get("what", "").startswith("profile"):
            variants.append(c.get("device"))
    timg = ct.get("image")
    for v in variants:
        by = {c.get("what"): c for c in clip if c.get("device") == v}
        print(f"| **{v}** | | | |")
        img = by.get("image")
        if img:
            t = timg["img_per_s"] if timg else None
            ratio = f"{img['img_per_s_device'] / t:.2f}" if t else "-"
            print(f"| images, batch {img['batch']}, device time (img/s) | "
                  f"{img['img_per_s_device']:.0f} | {t if t else '-'} | {ratio} |")
            print(f"| images, wall incl. pixel upload (img/s) | {img['img_per_s_wall']:.0f} | - | - |")
        txt = by.get("text_bucketed")
        for what in ("text_padded77", "text_batch_max", "text_bucketed"):
            t = ct.get(what)
            if t or (what == "text_bucketed" and txt):
                mine = txt["prompts_per_s"] if (txt and what == "text_bucketed") else None
                theirs = t["prompts_per_s"] if t else None
                ratio = f"{mine / theirs:.2f}" if (mine and theirs) else "-"
                print(f"| {what} (prompts/s, mean {(txt or t).get('mean_tokens')} tokens) | "
                      f"{f'{mine:.0f}' if mine else '-'} | {theirs if theirs else '-'} | {ratio} |")
        par = by.get("parity_vs_cpu")
        if par:
            print(f"| GPU vs CPU laic, same model | image max rel {par['image_max_rel']}, "
                  f"min cos {par['image_min_cos']} | text max rel {par['text_max_rel']}, "
                  f"min cos {par['text_min_cos']} | |")
    if "error" in ct:
        print(f"| torch error | {ct['error']['error']} | | |")
    # Where the device time goes (clip_gpu_bench --profile, LAIC_CLIP_PROFILE=1).
    profiles = [c for c in clip if c.get("what", "").startswith("profile_")]
    if profiles:
        steps = []
        for c in profiles:
            steps += [k for k in c["steps_ms"] if k not in steps]
        print()
        print("| step (ms: image per batch, text per run of all prompts) | " + " | ".join(
            f"{c['what'][8:]}, {c['device']}" for c in profiles) + " |")
        print("|---" * (len(profiles) + 1) + "|")
        for k in steps + ["total"]:
            vals = [c["device_ms"] if k == "total" else c["steps_ms"].get(k) for c in profiles]
            print(f"| {k} | " + " | ".join("-" if x is None else f"{x:.2f}" for x in vals) + " |")

# A folder of JPEGs to embeddings (examples/clip_folder_bench.rs): where the time goes.
if fold:
    print()
    print(f"| folder of JPEGs → embeddings ({fold[0]['device']}) | laic |")
    print("|---|---|")
    for c in fold:
        w = c["what"]
        if w in ("decode_1t", "preprocess_1t"):
            print(f"| {w.split('_')[0]} {c['size']}, one thread (ms/image) | {c['ms_per_image']:.2f} |")
        elif w == "prep_all_threads":
            print(f"| decode + preprocess, {c['threads']} threads (img/s) | {c['img_per_s']:.0f} |")
        elif w == "encode_only":
            dev, up, chk = c.get("img_per_s_device"), c.get("upload_etc_ms"), c["input_check_ms"]
            if dev is not None:
                print(f"| encoder alone, batch {c['batch']}: device / wall (img/s) | {dev:.0f} / "
                      f"{c['img_per_s_wall']:.0f} (upload etc. {up:.0f} ms, input check {chk:.0f} ms) |")
            else:
                print(f"| encoder alone, batch {c['batch']} (img/s) | {c['img_per_s_wall']:.1f} |")
        elif w == "end_to_end":
            busy = c.get("device_busy_fraction")
            extra = f" (device busy {busy:.0%})" if busy is not None else ""
            print(f"| end to end, {c['images']} files, {c['threads']} threads (img/s) | "
                  f"{c['img_per_s']:.1f}{extra} |")
        elif w == "where":
            print(f"| bound | {c['bound']} ({c['end_to_end_vs_bound']:.2f} of it) |")
