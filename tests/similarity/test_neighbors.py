import json

import numpy as np
import pytest
from knn_reference import brute_force

from embsurgeon.errors import SimilarityError, VocabularyError
from embsurgeon.similarity import nearest_neighbors
from embsurgeon.similarity.neighbors import random_rows, resolve_queries
from embsurgeon.table import EmbeddingTable

RNG = np.random.default_rng(11)
TOKENS = ["king", "queen", "man", "woman", "北京", "##ing", "apple", "banana"]
TABLE = EmbeddingTable(TOKENS, RNG.standard_normal((8, 5)).astype(np.float32),
                       {"source": "words.vec"})


def test_tokens_rows_and_vectors_give_the_same_neighbours():
    by_token = nearest_neighbors(TABLE, ["king", "北京"], k=3, device="cpu")
    by_row = nearest_neighbors(TABLE, [0, 4], k=3, device="cpu")
    np.testing.assert_array_equal(by_token.ids, by_row.ids)
    ref = brute_force(TABLE.vectors[[0, 4]], TABLE.vectors, 3, exclude=[[0], [4]])
    np.testing.assert_array_equal(by_token.ids, ref.ids)
    assert by_token.tokens[0] == tuple(TOKENS[i] for i in ref.ids[0])
    assert by_token.queries == ("king", "北京")
    # a raw vector is not a row: nothing is excluded, so the row itself comes first
    by_vector = nearest_neighbors(TABLE, [TABLE["king"]], k=3, device="cpu")
    assert by_vector.tokens[0][0] == "king" and by_vector.queries == ("<vector 0>",)
    assert by_vector.query_ids.tolist() == [-1]


def test_include_self_and_all_rows():
    with_self = nearest_neighbors(TABLE, ["queen"], k=2, include_self=True, device="cpu")
    assert with_self.tokens[0][0] == "queen"
    everything = nearest_neighbors(TABLE, None, k=100, device="cpu")
    assert everything.ids.shape == (8, 7) and len(everything) == 8


def test_empty_query_list():
    result = nearest_neighbors(TABLE, [], k=3, device="cpu")
    assert len(result) == 0 and result.ids.shape == (0, 3) and result.to_dict() == []


def test_unknown_tokens_name_close_spellings():
    with pytest.raises(VocabularyError,
                       match=r"token not in the vocabulary of words\.vec: 'Queen' "
                             r"\(close spellings: 'queen'\)"):
        nearest_neighbors(TABLE, ["king", "Queen"], device="cpu")
    with pytest.raises(VocabularyError, match=r"2 tokens not in .*'ing' \(close spellings: "
                                              r"'##ing', 'king'\); 'zzzzzz' \(no close"):
        nearest_neighbors(TABLE, ["ing", "zzzzzz"], device="cpu")


def test_a_composer_fills_in_missing_tokens():
    composed = TABLE["king"] + TABLE["##ing"]
    result = nearest_neighbors(TABLE, ["kinging"], k=2, device="cpu",
                               compose=lambda t: composed if t == "kinging" else None)
    ref = brute_force(composed[None], TABLE.vectors, 2)
    assert result.ids.tolist() == ref.ids.tolist() and result.query_ids.tolist() == [-1]
    with pytest.raises(VocabularyError, match="'other'"):
        resolve_queries(TABLE, ["other"], compose=lambda t: None)


def test_bad_rows_and_vectors():
    with pytest.raises(SimilarityError, match="row 8 is out of range"):
        nearest_neighbors(TABLE, [8], device="cpu")
    with pytest.raises(SimilarityError, match=r"query vector 0 has shape \(3,\)"):
        nearest_neighbors(TABLE, [np.zeros(3)], device="cpu")


def test_to_dict_is_json_ready():
    data = nearest_neighbors(TABLE, ["man"], k=2, device="cpu").to_dict()
    assert json.loads(json.dumps(data))[0]["query"] == "man"
    assert data[0]["row"] == 2 and len(data[0]["neighbors"]) == 2
    assert set(data[0]["neighbors"][0]) == {"token", "row", "score"}


def test_random_rows_are_distinct_and_reproducible():
    assert random_rows(TABLE, 5, seed=1) == random_rows(TABLE, 5, seed=1)
    assert sorted(random_rows(TABLE, 100)) == list(range(8))


def test_faiss_backend_through_the_table_api():
    pytest.importorskip("faiss")
    a = nearest_neighbors(TABLE, None, k=3, backend="torch", device="cpu")
    b = nearest_neighbors(TABLE, None, k=3, backend="faiss")
    np.testing.assert_array_equal(a.ids, b.ids)


def test_subword_composer_on_a_word_table():
    from embsurgeon.similarity.neighbors import SubwordComposer

    table = EmbeddingTable(["sun", "flower", "moon"],
                           np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32))
    compose = SubwordComposer(table)
    result = nearest_neighbors(table, ["sunflower"], k=1, device="cpu", compose=compose)
    assert result.tokens == (("moon",),) and compose.pieces == {"sunflower": ("sun", "flower")}
    assert compose("xyzzy") is None
