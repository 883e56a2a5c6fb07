#!/usr/bin/env python3
"""Builds data/clip-tokenizer.json, the CLIP tokenizer that laic embeds.

Source: OpenAI's BPE vocabulary `bpe_simple_vocab_16e6.txt.gz` (MIT), as shipped in the
`open-clip-torch` wheel on PyPI. The vocabulary is derived exactly as OpenAI's
`simple_tokenizer.py` does (256 byte symbols, the same with `</w>`, the 48,894 merges, then
`<|startoftext|>` and `<|endoftext|>`: 49,408 tokens), written as vocab.json/merges.txt, and
turned into a fast tokenizer by transformers' `CLIPTokenizer`; its `tokenizer.json` is saved.

Usage (needs transformers; the fixture venv has it):
    python scripts/make_tokenizer.py [--bpe path/to/bpe_simple_vocab_16e6.txt.gz]
Without --bpe the open-clip-torch wheel is fetched with `pip download` into a temp folder.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile

OPEN_CLIP_WHEEL = "open-clip-torch==3.3.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bytes_to_unicode():
    """OpenAI's reversible byte → printable-character map (simple_tokenizer.py)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def fetch_bpe(tmp):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, OPEN_CLIP_WHEEL],
        check=True,
    )
    wheel = next(f for f in os.listdir(tmp) if f.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
        return z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")


def vocab_and_merges(bpe_gz):
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    return {tok: i for i, tok in enumerate(vocab)}, merges


def build(bpe_gz, out_dir):
    """Writes vocab.json and merges.txt into out_dir and returns a CLIPTokenizerFast."""
    from transformers import CLIPTokenizerFast

    vocab, merges = vocab_and_merges(bpe_gz)
    vf, mf = os.path.join(out_dir, "vocab.json"), os.path.join(out_dir, "merges.txt")
    with open(vf, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(mf, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(" ".join(m) + "\n" for m in merges)
    try:  # transformers >= 5: the fast tokenizer takes the vocabulary itself
        return CLIPTokenizerFast(vocab=vocab, merges=[tuple(m) for m in merges])
    except TypeError:  # transformers 4 reads the files
        return CLIPTokenizerFast(vocab_file=vf, merges_file=mf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bpe", help="bpe_simple_vocab_16e6.txt.gz (default: from the wheel)")
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "clip-tokenizer.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bpe = open(args.bpe, "rb").read() if args.bpe else fetch_bpe(tmp)
        tok = build(bpe, tmp)
        tok.backend_tokenizer.save(args.out, pretty=False)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes), vocab {len(tok)}")


if __name__ == "__main__":
    main()
