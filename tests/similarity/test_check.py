import json

import numpy as np
import pytest

from embsurgeon.errors import FormatError, MissingDependencyError, VocabularyError
from embsurgeon.io.state_dict import provenance_path
from embsurgeon.similarity.check import Origin, check_tables, read_provenance
from embsurgeon.table import EmbeddingTable

RNG = np.random.default_rng(2)
TOKENS = [f"w{i}" for i in range(300)]
BEFORE = EmbeddingTable(TOKENS, RNG.standard_normal((300, 12)).astype(np.float32))


def run(before, after, **kw):
    kw.setdefault("device", "cpu")
    return check_tables(before, after, **kw)


def test_an_unchanged_table_checks_perfectly():
    report = run(BEFORE, BEFORE, sample=0, anchors=50)
    assert report.overlap.mean == 1.0 and report.overlap.min == 1.0
    assert report.anchor_spearman.min == pytest.approx(1.0)
    assert report.common_tokens == 300 and len(report.overlaps) == 300
    assert report.norms.origin is Origin.EQUAL_VECTORS
    assert report.norms.copied_rows == 300 and report.norms.initialized_rows == 0
    assert report.initialized_examples == ()


def test_a_rotation_keeps_neighbourhoods_and_dimension_changes_are_fine():
    q, _ = np.linalg.qr(RNG.standard_normal((12, 12)))
    rotated = BEFORE.with_vectors((BEFORE.vectors @ q).astype(np.float32))
    report = run(BEFORE, rotated, sample=100, anchors=50)
    assert report.overlap.min == 1.0 and report.anchor_spearman.min > 0.999
    # dropping dimensions (a crude PCA) changes neighbourhoods, measurably but not totally
    cut = BEFORE.with_vectors(np.ascontiguousarray(BEFORE.vectors[:, :6]))
    report = run(BEFORE, cut, sample=100, anchors=50)
    assert 0.05 < report.overlap.mean < 0.9 and report.after_dim == 6
    assert report.norms.origin is Origin.SHARED_TOKENS and report.norms.copied_rows == 300


def test_reinitialized_rows_are_found_and_listed_as_most_changed():
    vectors = BEFORE.vectors.copy()
    vectors[:20] = RNG.standard_normal((20, 12)) * 5
    after = EmbeddingTable([*TOKENS, "new1", "new2"],
                           np.vstack([vectors, RNG.standard_normal((2, 12))]).astype(np.float32))
    report = run(BEFORE, after, sample=0, anchors=50, top_changed=5)
    assert report.norms.copied_rows == 280 and report.norms.initialized_rows == 22
    assert report.norms.ratio > 1.5  # the new rows are visibly larger
    assert {c.token for c in report.most_changed} <= {f"w{i}" for i in range(20)}
    assert len(report.most_changed) == 5 and len(report.initialized_examples) == 5
    worst = report.most_changed[0]
    assert worst.overlap == min(report.overlaps) and len(worst.before) == 10


def test_float16_output_still_counts_as_copied():
    half = BEFORE.astype(np.float16).with_metadata(source_dtype="float16")
    assert run(BEFORE, half, sample=50, anchors=20).norms.copied_rows == 300


def test_provenance_decides_copied_rows(tmp_path):
    after_path = tmp_path / "out.safetensors"
    sidecar = provenance_path(after_path)
    assert sidecar.name == "out.provenance.jsonl"
    methods = ["exact", "subword-mean", "override", "mean", "padding", "case-fold"]
    lines = [{"row": i, "token": TOKENS[i], "method": methods[i % 6],
              "sources": [TOKENS[i]], "weights": [1.0]} for i in range(300)]
    sidecar.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    provenance = read_provenance(sidecar, BEFORE)
    report = run(BEFORE, BEFORE, sample=20, anchors=20, provenance=provenance)
    assert report.norms.origin is Origin.PROVENANCE
    # exact, override, case-fold copy; subword-mean, mean initialize; padding is neither
    assert (report.norms.copied_rows, report.norms.initialized_rows) == (150, 100)
    assert {e.method for e in report.initialized_examples} <= {"subword-mean", "mean"}


def test_provenance_errors_name_line_and_row(tmp_path):
    sidecar = tmp_path / "out.provenance.jsonl"
    sidecar.write_text('{"row": 0, "token": "w0", "method": "exact"}\n{"row": 1}\n')
    with pytest.raises(FormatError, match=r"line 2: not a provenance record"):
        read_provenance(sidecar, BEFORE)
    sidecar.write_text('{"row": 3, "token": "w4", "method": "exact"}\n')
    with pytest.raises(FormatError, match=r"line 1: row 3 is 'w4' in the provenance but 'w3'"):
        read_provenance(sidecar, BEFORE)


def test_word_pairs_and_analogies_before_and_after(gensim_data):
    pytest.importorskip("gensim")
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(str(gensim_data / "euclidean_vectors.bin"),
                                           binary=True)
    table = EmbeddingTable(list(kv.index_to_key), kv.vectors)
    report = run(table, table, sample=100, anchors=50,
                 similarity_files=[gensim_data / "wordsim353.tsv"],
                 analogy_files=[gensim_data / "questions-words.txt"])
    (before, after), = report.similarity
    expected = kv.evaluate_word_pairs(str(gensim_data / "wordsim353.tsv"))[1].statistic
    assert before.spearman == pytest.approx(expected) and after.spearman == before.spearman
    (b, a), = report.analogies
    assert b.accuracy == a.accuracy == pytest.approx(
        kv.evaluate_word_analogies(str(gensim_data / "questions-words.txt"))[0])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["similarity"][0]["before"]["spearman"] == pytest.approx(expected)


def test_too_few_shared_tokens():
    other = EmbeddingTable(["w0", "x"], np.ones((2, 12), np.float32))
    with pytest.raises(VocabularyError, match=r"the tables share 1 token\(s\); a check needs "
                                              r"at least 3 \(are they the same vocabulary"):
        run(BEFORE, other)
    # two shared tokens: each one's only neighbour is the other, agreement would be forced
    other = EmbeddingTable(["w0", "w1", "x"], RNG.standard_normal((3, 12)).astype(np.float32))
    with pytest.raises(VocabularyError, match="the tables share 2 token"):
        run(BEFORE, other, k=1)


def few_shared(n):
    """A table sharing its first ``n`` tokens with BEFORE, with unrelated vectors."""
    return EmbeddingTable([*TOKENS[:n], "extra"],
                          RNG.standard_normal((n + 1, 12)).astype(np.float32))


def test_k_near_the_shared_count_is_refused_not_reported_as_agreement():
    # 10 shared tokens and k=10: every neighbour list would be all 9 others, overlap 1.0
    with pytest.raises(VocabularyError, match=r"the tables share 10 tokens, too few for "
                                              r"overlap@10: .* among 9 other tokens agree by "
                                              r"chance; use k 4 or less \(-k 4\)"):
        run(BEFORE, few_shared(10))
    with pytest.raises(VocabularyError, match="too few for overlap@5"):
        run(BEFORE, few_shared(10), k=5)
    report = run(BEFORE, few_shared(10), k=4)  # the largest k half the others allow
    assert report.k == 4 and report.requested_k is None
    assert report.chance_overlap == pytest.approx(4 / 9)
    assert report.overlap.mean < 1.0  # unrelated vectors do not agree perfectly


def test_reduce_k_lowers_k_and_says_so():
    report = run(BEFORE, few_shared(10), reduce_k=True)
    assert (report.k, report.requested_k, report.common_tokens) == (4, 10, 10)
    assert all(len(c.before) == 4 for c in report.most_changed)
    data = report.to_dict()
    assert data["k"] == 4 and data["requested_k"] == 10
    assert data["chance_overlap"] == pytest.approx(4 / 9)
    assert run(BEFORE, BEFORE, sample=20, anchors=20, reduce_k=True).requested_k is None


def test_zero_rows_do_not_break_the_check():
    vectors = BEFORE.vectors.copy()
    vectors[:5] = 0
    report = run(BEFORE, BEFORE.with_vectors(vectors), sample=0, anchors=30)
    assert np.isfinite(report.overlaps).all()
    # a zero row has no similarity order to keep: it is left out, not counted as NaN
    assert report.anchor_spearman.count == 295


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    from embsurgeon.similarity.plot import save_check_plot

    vectors = BEFORE.vectors.copy()
    vectors[:30] *= 3
    report = run(BEFORE, BEFORE.with_vectors(vectors), sample=100, anchors=30)
    path = save_check_plot(report, tmp_path / "check.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    import sys

    from embsurgeon.similarity.plot import save_check_plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = run(BEFORE, BEFORE, sample=10, anchors=10)
    with pytest.raises(MissingDependencyError, match=r"--plot needs the 'matplotlib'"):
        save_check_plot(report, tmp_path / "x.png")
