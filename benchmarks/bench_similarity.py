"""Exact kNN: embsurgeon's tiled torch engine against gensim's most_similar and faiss's exact
IndexFlatIP, all-rows top-10 by cosine, plus GPU throughput and peak-memory figures.

    python benchmarks/bench_similarity.py                   # CPU suite + memory suite
    python benchmarks/bench_similarity.py --quick           # small smoke sizes
    python benchmarks/bench_similarity.py --suite gpu --device cuda

Each contender runs in a fresh subprocess (benchmarks/harness.py). Torch, faiss (OpenMP) and
numpy's BLAS (gensim) get the same thread count, --threads, set through the environment and
the libraries' own calls. gensim answers one query per call, so it is timed on a sample of
queries and extrapolated to all rows (printed as such). Ours excludes each row from its own
neighbours; faiss is asked for k+1 and its self hit dropped, the same work.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import DATA, Measurement, measure


def table_path(rows: int, dim: int, seed: int = 0) -> Path:
    """A generated float32 table: clustered Gaussian rows, like real embeddings' structure."""
    path = DATA / f"similarity_{rows}x{dim}.npy"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, rows // 100), dim)).astype(np.float32)
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+",
                                    dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, 50_000):
        n = min(50_000, rows - start)
        pick = rng.integers(0, len(centers), n)
        out[start:start + n] = centers[pick] + 0.7 * rng.standard_normal((n, dim),
                                                                        dtype=np.float32)
    out.flush()
    del out
    path.with_suffix(".tmp.npy").rename(path)
    return path


def _setup(path: Path, threads: int, extra: str = "") -> str:
    return f"""
import numpy as np, torch
torch.set_num_threads({threads})
X = np.load({str(path)!r})  # in memory, like a table that was read
{extra}
"""


def ours(path: Path, threads: int, *, device: str = "cpu", precision: str = "float32",
         budget_mb: int = 256, queries: int | None = None) -> Measurement:
    q = "X" if queries is None else f"X[:{queries}]"
    excl = ("np.arange(len(X))[:, None]" if queries is None
            else f"np.arange({queries})[:, None]")
    return measure(
        f"hits = search({q}, X, 10, exclude={excl}, device={device!r}, "
        f"precision={precision!r}, memory_budget={budget_mb} * 2**20)\n"
        "RESULT = {'plan': [hits.plan.query_rows, hits.plan.database_rows]}",
        setup=_setup(path, threads, "from embsurgeon.similarity.knn import search\n"
                     # warm-up: CUDA context, cuBLAS handles, kernels
                     f"search(X[:8], X[:4096], 10, device={device!r}, "
                     f"precision={precision!r})"),
        label="embsurgeon")


def faiss_flat(path: Path, threads: int) -> Measurement:
    return measure(
        "Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)\n"
        "index = faiss.IndexFlatIP(X.shape[1]); index.add(Xn)\n"
        "D, I = index.search(Xn, 11)\n",
        setup=_setup(path, threads, f"import faiss\nfaiss.omp_set_num_threads({threads})"),
        label="faiss IndexFlatIP")


def gensim_loop(path: Path, threads: int, sample: int) -> Measurement:
    m = measure(
        f"for key in keys[:{sample}]:\n    kv.most_similar(key, topn=10)\n",
        setup=_setup(path, threads,
                     "from gensim.models import KeyedVectors\n"
                     "keys = [f'w{i}' for i in range(len(X))]\n"
                     "kv = KeyedVectors(X.shape[1]); kv.add_vectors(keys, X)\n"
                     "kv.most_similar(keys[0], topn=10)  # fills the norms, untimed\n"
                     f"keys = [keys[i] for i in np.random.default_rng(1).choice(len(keys), "
                     f"{sample}, replace=False)]"),
        label="gensim most_similar loop")
    return m


def cpu_suite(rows: int, dim: int, threads: int, sample: int, repeat: int) -> None:
    path = table_path(rows, dim)
    print(f"\n## CPU: all-rows top-10 cosine, {rows} x {dim}, {threads} threads each; "
          f"ours and faiss alternate {repeat}x, best run kept (the machine may be shared)")
    runs = [(ours(path, threads), faiss_flat(path, threads)) for _ in range(repeat)]
    for i, (x, y) in enumerate(runs, 1):
        print(f"  run {i}: ours {x.seconds:.2f} s, faiss {y.seconds:.2f} s")
    a = min((x for x, _ in runs), key=lambda m: m.seconds)
    f = min((y for _, y in runs), key=lambda m: m.seconds)
    print(f"embsurgeon (torch)      {a.seconds:8.2f} s  peak {a.peak_mb:7.0f} MB  tiles {a.result}")
    print(f"faiss IndexFlatIP exact {f.seconds:8.2f} s  peak {f.peak_mb:7.0f} MB   "
          f"ours/faiss time ratio {a.seconds / f.seconds:.2f} (target <= 1.2)")
    g = gensim_loop(path, threads, sample)
    full = g.seconds * rows / sample
    print(f"gensim most_similar     {full:8.2f} s  (extrapolated: {sample} queries took "
          f"{g.seconds:.2f} s)  speed-up {full / a.seconds:.1f}x (target >= 20x)")


def memory_suite(dim: int, sizes: list[int], budgets: list[int], queries: int,
                 threads: int) -> None:
    print(f"\n## Memory: {queries} queries x N rows, top-10; working memory = peak RSS - RSS "
          "after loading the table")
    print(f"{'rows':>9} {'budget MB':>10} {'table MB':>9} {'working MB':>11} {'seconds':>8}")
    for rows in sizes:
        path = table_path(rows, dim)
        for budget in budgets:
            m = measure(
                "import resource\n"
                f"hits = search(X[:{queries}], X, 10, device='cpu', "
                f"memory_budget={budget} * 2**20)\n"
                "RESULT = rss0\n",
                setup=_setup(path, threads,
                             "from embsurgeon.similarity.knn import search\n"
                             "search(X[:4], X[:64], 10, device='cpu')\n"
                             "def _rss():\n"
                             "    for line in open('/proc/self/status'):\n"
                             "        if line.startswith('VmRSS'): return int(line.split()[1])\n"
                             "rss0 = _rss()"),
                label="memory")
            working = m.peak_mb - m.result / 1024
            print(f"{rows:>9} {budget:>10} {rows * dim * 4 / 2**20:>9.0f} {working:>11.0f} "
                  f"{m.seconds:>8.2f}")


def gpu_suite(device: str, shapes: list[tuple[int, int]], threads: int, budget_mb: int,
              cpu_sample: int) -> None:
    print(f"\n## GPU ({device}): all-rows top-10 cosine, memory budget {budget_mb} MB; "
          "matmul = the same tiles' plain torch.mm on device-resident data, nothing else")
    for rows, dim in shapes:
        path = table_path(rows, dim)
        fastest = float("inf")
        for precision in ("float32", "float16"):
            if device == "cpu" and precision != "float32":
                continue
            a = ours(path, threads, device=device, precision=precision, budget_mb=budget_mb)
            bq, bd = a.result["plan"]
            fastest = min(fastest, a.seconds)
            # Plain matmul: the same tile shapes over the same data, already on the device in
            # the compute dtype, nothing else (no transfers, normalization or top-k).
            mm = measure(
                f"""
for d0 in range(0, len(Xd), {bd}):
    blk = Xd[d0:d0 + {bd}]
    for q0 in range(0, len(Xd), {bq}):
        qb = Xd[q0:q0 + {bq}]
        torch.mm(qb, blk.T, out=buf[:len(qb) * len(blk)].view(len(qb), len(blk)))
if {device!r} == "cuda":
    torch.cuda.synchronize()
RESULT = torch.cuda.get_device_name() if {device!r} == "cuda" else "cpu"
""",
                setup=_setup(path, threads, f"""
dt = getattr(torch, {precision!r})
Xd = torch.from_numpy(X).to({device!r}, dt)
buf = torch.empty({bq} * {bd}, dtype=dt, device={device!r})
torch.mm(Xd[:{bq}], Xd[:{bd}].T, out=buf.view({bq}, {bd}))  # warm-up
"""),
                label="matmul")
            print(f"{rows} x {dim} {precision:8}: ours {a.seconds:8.2f} s, matmul only "
                  f"{mm.seconds:8.2f} s -> {100 * mm.seconds / a.seconds:5.1f}% of matmul "
                  f"throughput (target >= 50%) on {mm.result}; tiles {bq} x {bd}")
        c = ours(path, threads, device="cpu", queries=cpu_sample)
        cpu_full = c.seconds * rows / cpu_sample
        print(f"{rows} x {dim} CPU ({threads} threads): {cpu_full:.1f} s extrapolated from "
              f"{cpu_sample} queries; speed-up of the fastest {device} run: "
              f"{cpu_full / fastest:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke sizes")
    parser.add_argument("--suite", choices=["cpu", "memory", "gpu", "all"], default="all",
                        help="all = cpu + memory (+ gpu when --device cuda)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="device for the gpu suite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gensim-sample", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs, CPU suite")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # inherited by every contender's subprocess
    rows = 20_000 if args.quick else 100_000
    if args.suite in ("cpu", "all"):
        cpu_suite(rows, 300, args.threads, 100 if args.quick else args.gensim_sample,
                  1 if args.quick else args.repeat)
    if args.suite in ("memory", "all"):
        sizes = [20_000, 60_000] if args.quick else [100_000, 400_000]
        budgets = [16, 64] if args.quick else [32, 128, 512]
        memory_suite(300, sizes, budgets, 500 if args.quick else 2000, args.threads)
    if args.suite == "gpu" or (args.suite == "all" and args.device == "cuda"):
        shapes = [(20_000, 300), (8_000, 1024)] if args.quick else [(400_000, 300),
                                                                   (150_000, 4096)]
        # 8 GiB on a GPU: all prepared queries stay on the device (see knn._queries_resident)
        gpu_suite(args.device, shapes, args.threads, 64 if args.quick else 8192,
                  200 if args.quick else 2000)


if __name__ == "__main__":
    main()
