"""align(): the orchestration, its report and the provenance of every row."""

from __future__ import annotations

import numpy as np
import pytest

from embsurgeon.align import Alignment, InitMethod, MatchLevel, align
from embsurgeon.align.api import COPIED_METHODS, PADDING, PLACEHOLDER, UNFILLED, parse_init
from embsurgeon.align.targets import load_target
from embsurgeon.errors import AlignmentError
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import TokenizerFamily, Vocabulary, load_vocabulary


@pytest.fixture
def glove() -> EmbeddingTable:
    rng = np.random.default_rng(0)
    words = ["the", "café", "paris", "coffee", "cat", "playing", "北京", "中国", "straße"]
    words += [f"w{i}" for i in range(40)]
    return EmbeddingTable(words, rng.standard_normal((len(words), 16)).astype(np.float32))


def _check_provenance(result: Alignment, source: EmbeddingTable) -> None:
    rows = result.table
    assert [p.row for p in result.provenance] == list(range(len(rows)))
    assert [p.token for p in result.provenance] == list(rows.tokens)
    counts: dict[str, int] = {}
    for p in result.provenance:
        counts[p.method] = counts.get(p.method, 0) + 1
        assert len(p.sources) == len(p.weights)
        if p.method in COPIED_METHODS:
            assert p.weights == (1.0,)
            np.testing.assert_array_equal(rows.vectors[p.row], source[p.sources[0]])
        if p.method in (PADDING, PLACEHOLDER, UNFILLED, InitMethod.ZERO.value):
            assert not rows.vectors[p.row].any()
    assert counts == dict(result.report.methods)


def test_align_onto_byte_level_bpe(trained, glove):
    target = load_vocabulary(trained["byte-bpe"])
    result = align(glove, target, init="mean", norm_match="none")
    assert result.table.tokens == target.tokens
    _check_provenance(result, glove)
    methods = result.report.methods
    assert methods["canonical"] >= 5 and methods["mean"] > 100
    assert result.table.padding_idx == target.tokens.index("<pad>")
    mean = glove.vectors[[glove.index[s] for s in set(
        p.sources[0] for p in result.provenance if p.method in COPIED_METHODS)]].mean(axis=0)
    row = next(p.row for p in result.provenance if p.method == "mean")
    np.testing.assert_allclose(result.table.vectors[row], mean, rtol=1e-5, atol=1e-6)


def test_every_target_kind_keeps_id_order(trained, glove, tmp_path):
    from embsurgeon.io.formats import write_table

    freq = tmp_path / "freq.txt"
    freq.write_text("cat 50\nthe 40\nzebra 3\n", encoding="utf-8")
    table_path = tmp_path / "other.safetensors"
    write_table(EmbeddingTable(["paris", "北京", "x"], np.ones((3, 2), np.float32)), table_path)
    for target, expected in [(trained["words"], None), (trained["spm"], None),
                             (trained["wordpiece"].parent, None), (freq, ("cat", "the", "zebra")),
                             (table_path, ("paris", "北京", "x")), (["cat", "dog"], None)]:
        vocab = load_target(target)
        result = align(glove, target, init="zero")
        assert result.table.tokens == vocab.tokens
        if expected:
            assert vocab.tokens == expected


def test_report_counts_and_summary(glove):
    result = align(glove, ["[PAD]", "the", "Paris", "zebra", "lion"], init="zero")
    report = result.report
    assert report.methods == {"exact": 1, "case-fold": 1, "zero": 2, "padding": 1}
    assert report.copied == 2 and report.initialized == 2
    assert report.summary() == ("5 rows: 2 copied (1 exact, 1 case-fold), 2 initialized "
                                "(2 zero), 1 padding")
    d = report.to_dict()
    assert d["padding_idx"] == 0 and d["init"] == ["zero"] and d["copied"] == 2


def test_chain_order_and_unfilled_rows(glove):
    rng = np.random.default_rng(1)
    aux = EmbeddingTable(["the", "cat", "dog", "coffee"],
                         rng.standard_normal((4, 5)).astype(np.float32))
    result = align(glove, ["the", "cat", "coffee", "dog", "zebra"], init="knn", aux=aux,
                   norm_match="none")
    methods = [p.method for p in result.provenance]
    assert methods == ["exact", "exact", "exact", "knn", UNFILLED]
    knn = result.provenance[3]
    assert set(knn.sources) <= {"the", "cat", "coffee"}
    assert abs(sum(knn.weights) - 1) < 1e-5
    expected = sum(w * glove[s] for s, w in zip(knn.sources, knn.weights, strict=True))
    np.testing.assert_allclose(result.table.vectors[3], expected, rtol=1e-4, atol=1e-5)
    assert not result.table.vectors[4].any()
    chained = align(glove, ["the", "cat", "coffee", "dog", "zebra"], init="knn,mean", aux=aux)
    assert [p.method for p in chained.provenance][3:] == ["knn", "mean"]


def test_norm_matching_rescales_only_new_rows(glove):
    plain = align(glove, ["the", "cat", "dog", "zebra"], init="mean", norm_match="none")
    scaled = align(glove, ["the", "cat", "dog", "zebra"], init="mean", norm_match="mean")
    np.testing.assert_array_equal(plain.table.vectors[:2], scaled.table.vectors[:2])
    ref = np.linalg.norm(glove.vectors[[0, 4]], axis=1).mean()
    np.testing.assert_allclose(np.linalg.norm(scaled.table.vectors[2:], axis=1), ref, rtol=1e-5)


def test_deterministic_with_a_seed(glove):
    target = [*glove.tokens[:20], "x1", "x2"]
    a = align(glove, target, init="mvn", seed=3)
    b = align(glove, target, init="mvn", seed=3)
    c = align(glove, target, init="mvn", seed=4)
    np.testing.assert_array_equal(a.table.vectors, b.table.vectors)
    assert a.provenance == b.provenance
    assert not np.array_equal(a.table.vectors, c.table.vectors)


def test_padding_and_pad_to_multiple_of(glove):
    result = align(glove, ["<pad>", "the", "cat"], init="mean", pad_to_multiple_of=8)
    table = result.table
    assert len(table) == 8 and table.padding_idx == 0 and not table.vectors[0].any()
    assert table.tokens[3:] == tuple(f"<embsurgeon:row:{i}>" for i in range(3, 8))
    assert not table.vectors[3:].any()
    assert result.report.methods[PLACEHOLDER] == 5 and result.report.methods[PADDING] == 1
    import torch

    emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(table.vectors),
                                             padding_idx=table.padding_idx)
    assert emb(torch.tensor([0])).abs().sum() == 0


def test_special_roles_and_overrides(glove):
    source = EmbeddingTable(["[CLS]", "[SEP]", "the"], np.eye(3, dtype=np.float32))
    out = align(source, Vocabulary(("<s>", "</s>", "Ġthe"), TokenizerFamily.BYTE_BPE,
                                   special={"bos": "<s>", "eos": "</s>"}), init="zero")
    assert [p.method for p in out.provenance] == ["special", "special", "canonical"]
    assert out.provenance[0].sources == ("[CLS]",)
    forced = align(source, ["the", "cat"], init="zero", overrides={"cat": "the"})
    assert forced.provenance[1].method == "override"
    only_exact = align(source, ["the", "The"], init="zero", match="exact")
    assert [p.method for p in only_exact.provenance] == ["exact", "zero"]


def test_dtype_is_kept(glove):
    half = glove.astype(np.float16)
    assert align(half, ["the", "zebra"], init="mean").table.vectors.dtype == np.float16


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"target": []}, "the target vocabulary is empty"),
    ({"target": ["zebra", "lion"]}, "no target token matches a source token"),
    ({"target": ["the"], "init": "mean,fancy"}, "unknown init method 'fancy'; choose from"),
    ({"target": ["the"], "init": "mean,subword"}, "'mean' builds every row"),
    ({"target": ["the"], "init": "mean,mean"}, "appears twice"),
    ({"target": ["the"], "init": ""}, "empty --init chain"),
    ({"target": ["the"], "match": "exact,fuzzy"}, "unknown match level 'fuzzy'"),
    ({"target": ["the"], "pad_to_multiple_of": 0}, "pad_to_multiple_of must be at least 1"),
    ({"target": ["the", "x"], "init": "knn"}, "needs an auxiliary table"),
])
def test_bad_input(glove, kwargs, words):
    with pytest.raises(AlignmentError, match=words):
        align(glove, **kwargs)


def test_bad_auxiliary_tables(glove):
    disjoint = EmbeddingTable(["lion", "tiger"], np.ones((2, 3), np.float32))
    with pytest.raises(AlignmentError, match="covers none of the target tokens"):
        align(glove, ["the", "zebra"], init="knn", aux=disjoint)
    only_new = EmbeddingTable(["zebra", "lion"], np.ones((2, 3), np.float32))
    with pytest.raises(AlignmentError, match="shares no token with both the source and"):
        align(glove, ["the", "zebra"], init="knn", aux=only_new)


def test_aux_of_another_dimension_is_used_for_similarity_only(glove):
    # knn/omp read the auxiliary space only to find neighbours; its width may differ.
    rng = np.random.default_rng(2)
    aux = EmbeddingTable(["the", "cat", "zebra"], rng.standard_normal((3, 300)).astype(np.float32))
    result = align(glove, ["the", "cat", "zebra"], init="knn,mean", aux=aux)
    assert result.table.dim == glove.dim and result.provenance[2].method == "knn"


def test_parse_init():
    assert parse_init("subword,knn,mean") == (InitMethod.SUBWORD, InitMethod.KNN, InitMethod.MEAN)
    assert parse_init(["auto"]) == "auto"
    assert MatchLevel.EXACT.value == "exact"


def test_more_bad_input(glove, tmp_path):
    with pytest.raises(AlignmentError, match="target not found"):
        align(glove, tmp_path / "missing.txt")
    with pytest.raises(AlignmentError, match="target list: token 'the' at ids 0 and 1"):
        align(glove, ["the", "the"])
    with pytest.raises(AlignmentError, match="the source table has no rows"):
        align(EmbeddingTable([], np.zeros((0, 3), np.float32)), ["the"])
    with pytest.raises(AlignmentError, match="the table has no rows"):
        load_target(EmbeddingTable([], np.zeros((0, 3), np.float32)))
    wrong = Vocabulary(("a", "b"), TokenizerFamily.WORD)
    with pytest.raises(AlignmentError, match="the source vocabulary has 2 tokens but the table"):
        align(glove, ["the"], source_vocab=wrong)
    from embsurgeon.align.postprocess import Transforms

    with pytest.raises(AlignmentError, match="--dim must be at least 1, got 0"):
        Transforms(dim=0)


def test_override_file_must_be_utf8(tmp_path):
    from embsurgeon.align.match import read_overrides

    path = tmp_path / "map.txt"
    path.write_bytes(b"a=\xff\n")
    with pytest.raises(AlignmentError, match=r"map\.txt: not UTF-8 text"):
        read_overrides(path)


def test_source_tokenizer_cut_to_the_table(trained):
    from embsurgeon.align.targets import source_vocabulary

    vocab = load_vocabulary(trained["wordpiece"])
    table = EmbeddingTable(vocab.tokens[:50], np.ones((50, 2), np.float32))
    cut = source_vocabulary(table, trained["wordpiece"])
    assert cut.tokens == vocab.tokens[:50] and cut.family is TokenizerFamily.WORDPIECE
    assert cut.lowercase


def test_id_gaps_of_the_target_stay_zero(glove):
    target = Vocabulary(("the", "<embsurgeon:row:1>", "zebra"), TokenizerFamily.WORD)
    out = align(glove, target, init="mean")
    assert [p.method for p in out.provenance] == ["exact", "placeholder", "mean"]
    assert not out.table.vectors[1].any()


def test_hf_table_brings_its_own_tokenizer(minilm_dir):
    from embsurgeon.io.formats import read_table

    table = read_table(minilm_dir)
    result = align(table, ["[PAD]", "Paris", "café", "unbelievablest"], init="subword,mean",
                   norm_match="none")
    assert result.report.source_family == "wordpiece"
    assert [p.method for p in result.provenance] == ["padding", "canonical", "canonical",
                                                     "subword"]
    pieces = result.provenance[3].sources
    assert pieces[0] == "unbelievable" and all(p.startswith("##") for p in pieces[1:])
    expected = np.mean([table[p] for p in pieces], axis=0)
    np.testing.assert_allclose(result.table.vectors[3], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm_match", ["quantile", "mean", "none"])
def test_nonfinite_copied_rows_give_no_moments_and_are_counted(norm_match):
    vectors = np.array([[1, 0], [np.nan, 1], [0, 3], [np.inf, 0]], dtype=np.float32)
    table = EmbeddingTable(["a", "b", "c", "d"], vectors)
    out = align(table, ["a", "b", "c", "d", "new"], init="mean", norm_match=norm_match)
    assert out.report.to_dict()["nonfinite_copied_rows"] == 2
    np.testing.assert_array_equal(out.table.vectors[:4], vectors)  # copied as they are
    new = out.table["new"]
    assert np.isfinite(new).all()
    if norm_match == "none":
        np.testing.assert_allclose(new, [0.5, 1.5])  # the mean of the finite rows a and c
    else:
        np.testing.assert_allclose(np.linalg.norm(new), 2.0, rtol=1e-6)  # their norms: 1, 3


def test_finite_rows_have_no_nonfinite_count(glove):
    assert "nonfinite_copied_rows" not in align(glove, ["the", "zebra"]).report.to_dict()


def test_only_nonfinite_copied_rows_is_an_error_naming_one():
    table = EmbeddingTable(["a", "b"], np.array([[np.nan, 0], [1, 1]], dtype=np.float32))
    with pytest.raises(AlignmentError, match="every copied source row has NaN or infinite "
                                             r"values \(the first: 'a'\).*repair the source"):
        align(table, ["a", "zebra"], init="mean")
    assert align(table, ["a"], init="mean").report.methods == {"exact": 1}  # nothing to build


@pytest.mark.parametrize(("spec", "words"), [
    ("mean,fancy", "unknown init method 'fancy'; choose from zero, .*, auto "
                   r"\(comma-separated for a chain\)"),
    ("auto,mean", "--init auto chooses a whole chain itself; give it alone, not with mean"),
    (["subword", "auto"], "give it alone, not with subword"),
    (" , ", "empty --init chain; name at least one method, or 'auto'"),
    ([], "empty --init chain"),
    ("subword,subword", "init method 'subword' appears twice in the chain"),
    ("mvn,subword,knn", "'mvn' builds every row, so subword, knn after it would never run; "
                        "put it last"),
])
def test_parse_init_errors(spec, words):
    with pytest.raises(AlignmentError, match=words):
        parse_init(spec)


def test_finite_rows_in_blocks(monkeypatch):
    from embsurgeon.align import api

    monkeypatch.setattr(api, "_FINITE_CHUNK", 2)
    matrix = np.array([[1e300, 0], [np.nan, 0], [0, 0], [-np.inf, 1], [2, 2]])
    assert api.finite_rows(matrix, np.array([4, 3, 2, 1, 0])).tolist() == [4, 2, 0]
    assert api.finite_rows(matrix, np.array([], dtype=np.int64)).tolist() == []
