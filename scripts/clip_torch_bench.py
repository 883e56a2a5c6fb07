#!/usr/bin/env python3
"""The by-hand full-size CLIP check: transformers' CLIPModel on the CPU, for comparison with laic.

1. Writes `expected.json` into the model folder: transformers' embeddings of the fixture
   prompts and images (the format of tests/fixtures/clip/expected.json); the Rust test
   `full_size_model_matches_transformers` compares laic to it when LAIC_CLIP_FULL names the
   folder.
2. Times torch on the same work as `benches/clip.rs` (256 template prompts, 32 images of
   random pixels) with the same thread count, printing prompts/s and images/s.

    python tests/fixtures/make_clip_fixture.py --full /tmp/vit-b32
    python scripts/clip_torch_bench.py /tmp/vit-b32 [--threads 2]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import make_clip_fixture as fx  # noqa: E402

TEMPLATES = [
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
]
NOUNS = [
    "cat", "golden retriever", "airplane", "espresso machine", "sea lion", "three-toed sloth",
    "jack-o'-lantern", "mountain bike", "Granny Smith", "coral reef", "bullet train", "wooden spoon",
]


def prompts(n):
    return [TEMPLATES[i % 7].replace("{}", NOUNS[(i // 7) % len(NOUNS)]) for i in range(n)]


def best_of(f, reps):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times), sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import CLIPModel, CLIPTokenizerFast
    import tempfile

    model = CLIPModel.from_pretrained(args.model, attn_implementation="sdpa").eval()
    with tempfile.TemporaryDirectory() as tmp:
        tok = fx.make_tokenizer.build(fx.make_tokenizer.fetch_bpe(tmp), tmp)

    # 1. Expected embeddings of the fixture inputs.
    img_dir = os.path.join(fx.OUT, "images")
    names = sorted(os.listdir(img_dir))
    pixels = torch.stack([fx.pixels_of(Image.open(os.path.join(img_dir, n))) for n in names])
    ids = fx.tokenize(tok, fx.PROMPTS)
    with torch.inference_mode():
        expected = {
            "prompts": fx.PROMPTS,
            "images": [os.path.join(img_dir, n) for n in names],
            "hf": {
                "text": fx.hf_embed(model, ids=ids).tolist(),
                "image": fx.hf_embed(model, pixels=pixels).tolist(),
            },
        }
    with open(os.path.join(args.model, "expected.json"), "w") as f:
        json.dump(expected, f)

    # 2. Throughput.
    texts = prompts(256)
    padded = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    longest = tok(texts, padding="longest", truncation=True, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    px = torch.rand((32, 3, 224, 224), generator=g) * 2 - 1

    def text(enc):
        def run():
            with torch.inference_mode():
                model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return run

    def image():
        with torch.inference_mode():
            model.get_image_features(pixel_values=px)

    for label, f, n in (
        ("text, padded to 77 (usual recipe)", text(padded), 256),
        (f"text, padded to longest ({longest['input_ids'].shape[1]})", text(longest), 256),
        ("images", image, 32),
    ):
        best, med = best_of(f, args.reps)
        print(f"torch {torch.__version__} {args.threads} threads, {label}: "
              f"{n / best:.1f}/s best, {n / med:.1f}/s median")


if __name__ == "__main__":
    main()
