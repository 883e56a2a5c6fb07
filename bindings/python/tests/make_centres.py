"""Writes data/centres_clip-vit-b32.safetensors: fixed image centres for the tests.

For each dataset of ../shared/data/clip-vit-b32, the centres are computed exactly as the
reference (../shared/reference/laic_ref.py, `run`) computes them: scikit-learn KMeans with
max(2·classes, val/10) centres, 3 restarts, seed 0, on the L2-normalised f64 val features;
then L2-normalised and stored as float16 (the tests use these stored values on both sides, so
the rounding does not matter). Saving them keeps the tests independent of scikit-learn's
version and BLAS. Run once: python make_centres.py [SHARED_DIR].
"""

import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.cluster import KMeans

DATASETS = ["dtd", "oxford_pets", "ucf101"]


def main() -> None:
    here = Path(__file__).resolve().parent
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[3] / "shared"
    data = shared / "data" / "clip-vit-b32"
    out = {}
    for ds in DATASETS:
        d = load_file(str(data / f"{ds}.safetensors"))
        xv = d["val_features"].astype(np.float64)
        xv /= np.linalg.norm(xv, axis=1, keepdims=True)
        k = max(2 * len(np.unique(d["test_labels"])), len(xv) // 10)
        w = KMeans(k, n_init=3, random_state=0).fit(xv).cluster_centers_
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        out[ds] = w.astype(np.float16)
        print(ds, w.shape)
    (here / "data").mkdir(exist_ok=True)
    save_file(out, str(here / "data" / "centres_clip-vit-b32.safetensors"))


if __name__ == "__main__":
    main()
