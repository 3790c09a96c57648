"""Word-vector reading: our text and word2vec-binary readers against gensim's loaders.

Generates (once) under benchmarks/data/ a GloVe-style text file of 400,000 x 300 (about
1 GB: no header, 5 significant digits, a few non-ASCII tokens) and the same vectors in
word2vec binary (about 480 MB), then times, each in a fresh process:

* ours  ``read_table(path, format="glove")`` (median of 3 runs)  vs gensim
  ``KeyedVectors.load_word2vec_format(path, binary=False, no_header=True)`` (one run: ~65 s)
* ours  ``read_table(path, format="word2vec-bin")``  vs gensim ``binary=True`` (median of 5
  runs each: these take about a second, where memory-allocation noise shows)
* ours  with ``keep`` = 30,000 tokens (the streaming filter alignment relies on)

Each pair must agree on tokens and a checksum of the vectors; the script says so. Set
``EMBSURGEON_PURE_NUMPY=1`` to time our readers without the compiled extension.

    python benchmarks/bench_text.py            # 400k x 300, a few minutes (gensim is slow)
    python benchmarks/bench_text.py --quick    # 20k x 300, seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DATA, Measurement, measure, ratio_line

DIM = 300
TARGET_TEXT = 20.0
TARGET_BINARY = 5.0


def _token(i: int) -> str:
    # Mostly ASCII like real files, with accented and Chinese words sprinkled in.
    if i % 97 == 0:
        return f"café{i}"
    if i % 101 == 0:
        return f"北京{i}"
    return f"w{i}"


def build(rows: int) -> tuple[Path, Path]:
    """The GloVe text file and the word2vec binary of the same vectors (skipped if present)."""
    import numpy as np

    DATA.mkdir(parents=True, exist_ok=True)
    text = DATA / f"glove-{rows // 1000}k-{DIM}d.txt"
    binary = DATA / f"word2vec-{rows // 1000}k-{DIM}d.bin"
    if text.is_file() and binary.is_file():
        return text, binary
    rng = np.random.default_rng(0)
    fmt = "%s " + " ".join(["%.5g"] * DIM) + "\n"
    block = 10_000
    with open(str(text) + ".tmp", "w", encoding="utf-8", newline="\n") as t_out, \
            open(str(binary) + ".tmp", "wb") as b_out:
        b_out.write(f"{rows} {DIM}\n".encode())
        for start in range(0, rows, block):
            n = min(block, rows - start)
            vectors = (rng.standard_normal((n, DIM)) * 0.4).astype(np.float32)
            tokens = [_token(start + i) for i in range(n)]
            lines = [fmt % (tok, *row) for tok, row in zip(tokens, vectors.tolist(),
                                                           strict=True)]
            t_out.write("".join(lines))
            # The binary holds exactly what the text says, so both readers must agree.
            parsed = np.array([line.split(" ", 1)[1].split() for line in lines],
                              dtype=np.float64).astype("<f4")
            b_out.write(b"".join(tok.encode() + b" " + row.tobytes() + b"\n"
                                 for tok, row in zip(tokens, parsed, strict=True)))
    Path(str(text) + ".tmp").rename(text)
    Path(str(binary) + ".tmp").rename(binary)
    return text, binary


def warm(*paths: Path) -> None:
    """Read each file once so every contender finds it in the page cache."""
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(64 << 20):
                pass


_CHECK = """
import numpy as np
RESULT = [len(tokens), tokens[0], tokens[-1], float(np.float64(vectors.sum(dtype=np.float64)))]
"""


def ours(path: Path, fmt: str, keep: int | None = None) -> Measurement:
    setup = ("from embsurgeon.io.formats import read_table\n"
             "import embsurgeon.io.text, embsurgeon.io.word2vec_bin\n")
    if keep:
        setup += f"keep = frozenset('w' + str(i) for i in range(0, {keep * 10}, 10))\n"
    arg = ", keep=keep" if keep else ""
    body = (f"t = read_table({str(path)!r}, format={fmt!r}{arg})\n"
            "tokens, vectors = t.tokens, t.vectors\n" + _CHECK)
    label = f"ours {fmt}" + (f" keep {keep}" if keep else "")
    return measure(body, label=label, setup=setup)


def gensim(path: Path, binary: bool) -> Measurement:
    setup = "from gensim.models import KeyedVectors\n"
    args = "binary=True" if binary else "binary=False, no_header=True"
    body = (f"kv = KeyedVectors.load_word2vec_format({str(path)!r}, {args})\n"
            "tokens, vectors = kv.index_to_key, kv.vectors\n" + _CHECK)
    return measure(body, label="gensim", setup=setup)


def median_of(runs: int, run: object) -> Measurement:
    """The run with the median time: a fresh process's first touch of ~0.5 GB of new memory
    swings by a factor of ten on a busy machine, and both contenders pay it."""
    results = sorted((run() for _ in range(runs)), key=lambda m: m.seconds)  # type: ignore[operator]
    return results[len(results) // 2]


def _agree(a: Measurement, b: Measurement) -> str:
    same = a.result[:3] == b.result[:3] and abs(a.result[3] - b.result[3]) <= 1e-6 * max(
        1.0, abs(b.result[3]))
    return "same tokens and checksum" if same else f"DISAGREE: {a.result} vs {b.result}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k rows instead of 400k")
    args = parser.parse_args()
    rows = 20_000 if args.quick else 400_000
    text, binary = build(rows)
    warm(text, binary)
    print(f"{text.name}: {text.stat().st_size / 1e6:.0f} MB, {binary.name}: "
          f"{binary.stat().st_size / 1e6:.0f} MB")

    # Ours is timed 3 times (median): at ~2 s, the first touch of 0.5 GB of fresh memory swings
    # it by up to a second on a busy machine; gensim's ~65 s once (the same swing is 1-2%).
    ours_text = median_of(3, lambda: ours(text, "glove"))
    peer_text = gensim(text, binary=False)
    print(ratio_line("GloVe text", ours_text, peer_text), "|", _agree(ours_text, peer_text))
    ours_bin = median_of(5, lambda: ours(binary, "word2vec-bin"))
    peer_bin = median_of(5, lambda: gensim(binary, binary=True))
    print(ratio_line("word2vec binary", ours_bin, peer_bin), "|", _agree(ours_bin, peer_bin))
    keep = min(30_000, rows // 10)
    filtered = ours(text, "glove", keep=keep)
    print(f"{'GloVe text, keep ' + str(keep) + ' tokens':40} ours {filtered.seconds:8.2f}s "
          f"{filtered.peak_mb:8.0f}MB | rows kept {filtered.result[0]}")
    text_ratio = peer_text.seconds / ours_text.seconds
    bin_ratio = peer_bin.seconds / ours_bin.seconds
    text_met = "met" if text_ratio >= TARGET_TEXT else "NOT met"
    print(f"targets: text >= {TARGET_TEXT:.0f}x ({text_met}, {text_ratio:.1f}x), peak memory <= "
          f"gensim's "
          f"({'met' if ours_text.peak_mb <= peer_text.peak_mb else 'NOT met'}); binary >= "
          f"{TARGET_BINARY:.0f}x ({'met' if bin_ratio >= TARGET_BINARY else 'NOT met'}, "
          f"{bin_ratio:.1f}x)")


if __name__ == "__main__":
    main()
