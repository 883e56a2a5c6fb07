#!/usr/bin/env python3
"""PyTorch + transformers fp16 on the GPU, the work of examples/clip_gpu_bench.rs, in the same
call of scripts/gpu-check.sh: a random ViT-B/32 (the config of ../shared/anchors/torch_anchors.py),
images in batches of 1024 already on the device (CUDA events, median), and text prompts of the
same realistic lengths (7 templates around nouns of 1-4 tokens, mean ~10 tokens) three ways:
padded to 77, padded to the batch maximum in random order, and length-bucketed (sorted by length,
each batch padded to its own maximum). One JSON line per measurement.

python3 scripts/clip_torch_gpu_bench.py [--quick]
"""
import json
import random
import sys
import time

import torch

from torch_timing import median_ms

QUICK = "--quick" in sys.argv
dev = "cuda"
dt = torch.float16
TEMPLATE_LEN = [6, 8, 5, 8, 8, 6, 8]


def emit(**kw):
    print(json.dumps({"bench": "clip_torch", **kw}), flush=True)


def main():
    from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)
    torch.manual_seed(0)
    vc = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, image_size=224, patch_size=32, projection_dim=512,
                          hidden_act="quick_gelu")
    tc = CLIPTextConfig(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                        num_attention_heads=8, max_position_embeddings=77, projection_dim=512,
                        hidden_act="quick_gelu")
    emit(what="env", torch=torch.__version__, gpu=torch.cuda.get_device_name())
    vm = CLIPVisionModelWithProjection(vc).to(dev, dt).eval()
    batch = 128 if QUICK else 1024
    px = torch.randn(batch, 3, 224, 224, device=dev, dtype=dt)
    with torch.inference_mode():
        ms = median_ms(lambda: vm(pixel_values=px).image_embeds, reps=3 if QUICK else 10)
    emit(what="image", batch=batch, device_ms=round(ms, 3), img_per_s=round(batch / ms * 1e3, 1),
         attn=vm.config._attn_implementation)
    del vm, px
    torch.cuda.empty_cache()

    tm = CLIPTextModelWithProjection(tc).to(dev, dt).eval()
    rng = random.Random(3)
    n = 16384 if QUICK else 262144
    lens = [TEMPLATE_LEN[i % 7] + 1 + min(rng.randrange(10), 9) // 3 for i in range(n)]
    mean = sum(lens) / n

    def ids_of(ls, width):
        t = torch.randint(1, 49000, (len(ls), width), device=dev)
        t[:, 0] = 49406
        L = torch.tensor(ls, device=dev)[:, None]
        pos = torch.arange(width, device=dev)[None, :]
        return torch.where(pos >= L - 1, torch.full_like(t, 49407), t)

    tb = 4096

    def run(batches):
        def f():
            with torch.inference_mode():
                for ids, mask in batches:
                    tm(input_ids=ids, attention_mask=mask).text_embeds
        return f

    def batches_of(ls, pad_to):
        out = []
        for s in range(0, len(ls), tb):
            chunk = ls[s:s + tb]
            w = pad_to or max(chunk)
            ids = ids_of(chunk, w)
            mask = (torch.arange(w, device=dev)[None, :] < torch.tensor(chunk, device=dev)[:, None]).long()
            out.append((ids, mask))
        return out

    m = n if QUICK else 65536  # padded to 77 is slow: a quarter of the prompts, scaled
    for label, ls, pad in (("text_padded77", lens[:m], 77),
                           ("text_batch_max", lens, None),
                           ("text_bucketed", sorted(lens), None)):
        b = batches_of(ls, pad)
        t0 = time.perf_counter()
        ms = median_ms(run(b), reps=1 if not QUICK else 2, warm=1)
        emit(what=label, prompts=len(ls), mean_tokens=round(mean, 2), device_ms=round(ms, 3),
             prompts_per_s=round(len(ls) / ms * 1e3, 1),
             wall_s=round(time.perf_counter() - t0, 2))
        del b
        torch.cuda.empty_cache()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the table shows the error
        emit(what="error", error=repr(e)[:500])
        raise
