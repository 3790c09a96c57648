"""Whole-matrix steps through align(): learned map, all-but-the-top, PCA, normalization."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from embsurgeon.align import align
from embsurgeon.align.postprocess import Transforms, load_projection
from embsurgeon.cli import cli
from embsurgeon.errors import AlignmentError
from embsurgeon.io.formats import write_table
from embsurgeon.table import EmbeddingTable


@pytest.fixture
def spaces():
    """A 20-d source and a 32-d model whose rows are a known linear image of the source."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    source = EmbeddingTable(words, rng.standard_normal((300, 20)).astype(np.float32))
    q, _ = np.linalg.qr(rng.standard_normal((32, 32)))
    model = EmbeddingTable(["[PAD]", *words[:250], "extra"],
                           np.vstack([np.zeros((1, 32)), source.vectors[:250] @ q[:20] * 3.0,
                                      np.ones((1, 32))]).astype(np.float32))
    return source, model


def test_map_to_recovers_a_known_map(spaces):
    source, model = spaces
    out = align(source, model, init="mean", transforms=Transforms(map_to=model, seed=1))
    mapped = out.report.details["transforms"]["map_to"]
    assert mapped["anchors"] == 250 and mapped["heldout_cosine"] > 0.999
    assert out.table.dim == 32 and out.table.padding_idx == 0
    np.testing.assert_allclose(out.table.vectors[1:251], model.vectors[1:251], atol=1e-3)
    assert out.linear_map is not None and out.linear_map.method.value == "procrustes"


def test_map_to_needs_shared_anchors(spaces):
    source, _ = spaces
    stranger = EmbeddingTable(["x", "y"], np.ones((2, 4), np.float32))
    with pytest.raises(AlignmentError, match="only 0 copied token"):
        align(source, source.tokens, init="zero", transforms=Transforms(map_to=stranger))


def test_pca_normalize_and_reuse(spaces, tmp_path):
    source, _ = spaces
    out = align(source, source.tokens, init="zero",
                transforms=Transforms(dim=5, normalize="l2"))
    assert out.table.dim == 5
    np.testing.assert_allclose(np.linalg.norm(out.table.vectors, axis=1), 1.0, rtol=1e-5)
    pca = out.report.details["transforms"]["pca"]
    assert pca["fitted"] and 0 < pca["explained_variance"] < 1
    path = out.projection.save(tmp_path / "p.safetensors")
    again = align(source, source.tokens, init="zero",
                  transforms=Transforms(pca=load_projection(path), normalize="l2"))
    np.testing.assert_allclose(again.table.vectors, out.table.vectors, atol=1e-5)
    assert again.report.details["transforms"]["pca"]["fitted"] is False


def test_all_but_the_top_removes_the_common_direction(spaces):
    source, _ = spaces
    shifted = source.with_vectors(source.vectors + 5.0)
    out = align(shifted, source.tokens, init="zero", transforms=Transforms(remove_top=1))
    assert abs(out.table.vectors.mean(axis=0)).max() < 1e-4


def test_padding_row_stays_zero_after_centering(spaces):
    source, _ = spaces
    out = align(source, ["<pad>", *source.tokens[:50]], init="zero",
                transforms=Transforms(normalize="center"))
    assert not out.table.vectors[0].any()


def test_transform_options_conflict():
    from embsurgeon.align.transform import fit_pca

    pca = fit_pca(np.random.default_rng(0).standard_normal((10, 4)), 2)
    with pytest.raises(AlignmentError, match="either a fitted PCA to reuse or --dim"):
        Transforms(pca=pca, dim=2)


def test_cli_map_to_and_dim(spaces, tmp_path):
    source, model = spaces
    src = tmp_path / "src.safetensors"
    mdl = tmp_path / "model.safetensors"
    write_table(source, src)
    write_table(model, mdl)
    out = tmp_path / "out.safetensors"
    result = CliRunner().invoke(cli, ["convert", str(src), str(out), "--map-to", str(mdl),
                                      "--init", "mean", "--dim", "8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "map-to procrustes: 250 anchors, held-out cosine 1.0" in result.output
    assert (tmp_path / "out.pca.safetensors").is_file()
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["dim"] == 8 and report["rows"] == len(model)
    again = tmp_path / "again.safetensors"
    pca = tmp_path / "out.pca.safetensors"
    result = CliRunner().invoke(cli, ["convert", str(src), str(again), "--map-to", str(mdl),
                                      "--init", "mean", "--pca", str(pca)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "again.report.json").read_text())["dim"] == 8
