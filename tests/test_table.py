import numpy as np
import pytest

from embsurgeon.errors import DtypeError, VocabularyError
from embsurgeon.table import EmbeddingTable, placeholder_token


def table(n: int = 3, d: int = 2) -> EmbeddingTable:
    return EmbeddingTable([f"t{i}" for i in range(n)],
                          np.arange(n * d, dtype=np.float32).reshape(n, d))


def test_lookup_and_shape():
    t = table()
    assert len(t) == 3 and t.dim == 2
    assert t["t1"].tolist() == [2.0, 3.0]
    assert "t2" in t and "nope" not in t
    assert t.index["t2"] == 2


def test_lengths_must_agree():
    with pytest.raises(VocabularyError, match="3 tokens but 4 rows"):
        EmbeddingTable(["a", "b", "c"], np.zeros((4, 2), np.float32))


def test_duplicates_name_token_and_rows():
    with pytest.raises(VocabularyError, match=r"duplicate token 'a' at rows 0 and 2"):
        EmbeddingTable(["a", "b", "a"], np.zeros((3, 2), np.float32))


def test_must_be_2d_float():
    with pytest.raises(VocabularyError, match="must be 2-D"):
        EmbeddingTable(["a"], np.zeros(2, np.float32))
    with pytest.raises(DtypeError, match="int64"):
        EmbeddingTable(["a"], np.zeros((1, 2), np.int64))


def test_metadata_must_be_text():
    with pytest.raises(VocabularyError, match="str to str"):
        EmbeddingTable(["a"], np.zeros((1, 2), np.float32), {"n": 1})  # type: ignore[dict-item]


def test_unknown_token_lookup():
    with pytest.raises(VocabularyError, match="'zzz' is not in the vocabulary"):
        table()["zzz"]


def test_transforms_return_new_tables():
    t = table(5)
    assert t.head(2).tokens == ("t0", "t1")
    assert t.keep({"t3", "t1", "x"}).tokens == ("t1", "t3")
    assert t.take([4, 0]).vectors.tolist() == [[8.0, 9.0], [0.0, 1.0]]
    u = t.with_metadata(padding_idx=0)
    assert u.padding_idx == 0 and t.padding_idx is None
    assert t.with_metadata(a="1").with_metadata(a=None).metadata == {}
    assert t.astype(np.float16).vectors.dtype == np.float16


def test_source_dtype_defaults_to_array_dtype():
    assert table().source_dtype == "float32"
    assert table().with_metadata(source_dtype="bfloat16").source_dtype == "bfloat16"


def test_placeholder_names_are_reserved_looking():
    assert placeholder_token(7) == "<embsurgeon:row:7>"


def test_padding_idx_follows_its_row_through_take_keep_and_head():
    t = EmbeddingTable(["a", "b", "<pad>", "c"], np.eye(4, dtype=np.float32),
                       {"padding_idx": "2", "source": "x"})
    assert t.take([2, 0]).padding_idx == 0
    assert t.keep(["c", "<pad>"]).padding_idx == 0  # table order: <pad> then c
    assert t.keep(["b", "c", "<pad>"]).padding_idx == 1
    gone = t.keep(["a", "c"])
    assert gone.padding_idx is None and "padding_idx" not in gone.metadata
    assert gone.metadata["source"] == "x"
    assert t.head(2).padding_idx is None
    assert t.head(3).padding_idx == 2
