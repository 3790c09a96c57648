"""PCA, whitening, all-but-the-top, normalization and linear maps against their oracles."""

from __future__ import annotations

import numpy as np
import pytest

from embsurgeon.align.transform import (
    LinearMap,
    MapMethod,
    Normalization,
    Projection,
    ProjectionKind,
    fit_all_but_the_top,
    fit_linear_map,
    fit_pca,
    l2_normalize,
    mean_cosine,
    normalize,
)
from embsurgeon.errors import AlignmentError, FormatError, OutputError


def _data(n: int = 400, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.2, d)  # distinct variances: a well-defined component order
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (rng.standard_normal((n, d)) * scales) @ basis.T + rng.standard_normal(d) * 2


# -- PCA ------------------------------------------------------------------------------------

def test_pca_matches_numpy_svd():
    x = _data()
    p = fit_pca(x, 4)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(np.sum(p.components * vt[:4], axis=1))  # SVD signs are arbitrary
    np.testing.assert_allclose(p.components, vt[:4] * signs[:, None], atol=1e-10)
    np.testing.assert_allclose(p.explained_variance, s[:4] ** 2 / (len(x) - 1), rtol=1e-10)
    np.testing.assert_allclose(p.apply(x.astype(np.float64)),
                               centred @ (vt[:4] * signs[:, None]).T, atol=1e-9)
    assert p.kind is ProjectionKind.PCA and (p.in_dim, p.out_dim) == (12, 4)


def test_pca_output_dtype_and_other_matrix():
    x = _data().astype(np.float32)
    p = fit_pca(x[:300], 5)
    out = p.apply(x[300:])
    assert out.dtype == np.float32 and out.shape == (100, 5)
    np.testing.assert_allclose(out, (x[300:] - p.mean) @ p.components.T, atol=1e-4)


def test_whitening_gives_identity_covariance():
    x = _data()
    z = fit_pca(x, 6, whiten=True).apply(x.astype(np.float64))
    np.testing.assert_allclose(np.cov(z.T), np.eye(6), atol=1e-9)


def test_all_but_the_top_removes_the_top_components():
    x = _data()
    p = fit_all_but_the_top(x, 2)
    out = p.apply(x.astype(np.float64))
    assert out.shape == x.shape and p.out_dim == 12
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(out @ p.components.T, 0, atol=1e-9)  # nothing left along them
    # What remains is exactly the variance of the lower components.
    _, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(np.linalg.svd(out, compute_uv=False)[:10], s[2:], rtol=1e-9)
    top = fit_pca(out, 1).explained_variance[0]
    assert top == pytest.approx(s[2] ** 2 / (len(x) - 1), rel=1e-9)


def test_all_but_the_top_with_zero_components_only_centres():
    x = _data()
    np.testing.assert_allclose(fit_all_but_the_top(x, 0).apply(x.astype(np.float64)),
                               x - x.mean(axis=0), atol=1e-12)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("whiten", [False, True])
def test_projection_save_load_round_trip(tmp_path, suffix, whiten):
    x = _data()
    p = fit_pca(x, 3, whiten=whiten)
    loaded = Projection.load(p.save(tmp_path / f"pca{suffix}"))
    assert loaded.kind is ProjectionKind.PCA and loaded.whiten is whiten
    np.testing.assert_array_equal(loaded.apply(x), p.apply(x))
    abtt = fit_all_but_the_top(x, 2)
    again = Projection.load(abtt.save(tmp_path / f"abtt{suffix}"))
    assert again.kind is ProjectionKind.ALL_BUT_THE_TOP
    np.testing.assert_array_equal(again.apply(x), abtt.apply(x))


def test_projection_errors(tmp_path):
    x = _data()
    with pytest.raises(AlignmentError, match="cannot keep 13 components of 400 rows x 12 dims"):
        fit_pca(x, 13)
    with pytest.raises(AlignmentError, match="cannot remove 12 components"):
        fit_all_but_the_top(x, 12)
    with pytest.raises(AlignmentError, match="needs at least 2 rows, got 1"):
        fit_pca(x[:1], 1)
    bad = x.copy()
    bad[3, 3] = np.nan
    with pytest.raises(AlignmentError, match="NaN or infinite"):
        fit_pca(bad, 2)
    p = fit_pca(x, 2)
    with pytest.raises(AlignmentError, match="fitted on 12-dim rows but got 7-dim rows"):
        p.apply(np.zeros((3, 7)))
    with pytest.raises(AlignmentError, match=r"not \.pt"):
        p.save(tmp_path / "pca.pt")
    p.save(tmp_path / "pca.npz")
    with pytest.raises(OutputError, match="already exists"):
        p.save(tmp_path / "pca.npz")
    p.save(tmp_path / "pca.npz", force=True)
    with pytest.raises(FormatError, match="no such file"):
        Projection.load(tmp_path / "missing.npz")
    fit_linear_map(x, x, "lstsq").save(tmp_path / "map.npz")
    with pytest.raises(FormatError, match="missing tensors mean, components"):
        Projection.load(tmp_path / "map.npz")
    np.savez(tmp_path / "other.npz", mean=np.zeros(2))
    with pytest.raises(FormatError, match="format version None"):
        Projection.load(tmp_path / "other.npz")


# -- normalization ----------------------------------------------------------------------------

def test_l2_is_zero_safe_and_keeps_dtype():
    out = l2_normalize(np.array([[3, 4], [0, 0]], dtype=np.float32))
    assert out.dtype == np.float32 and out.tolist() == [[0.6000000238418579, 0.800000011920929],
                                                        [0.0, 0.0]]


@pytest.mark.parametrize("method", list(Normalization))
def test_normalization_methods(method):
    x = _data().astype(np.float32)
    out = normalize(x, method)
    assert out.dtype == np.float32 and out.shape == x.shape
    centred = method in (Normalization.CENTER, Normalization.CENTER_L2)
    unit = method in (Normalization.L2, Normalization.CENTER_L2)
    if method is Normalization.NONE:
        np.testing.assert_array_equal(out, x)
    if centred and not unit:
        np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    if unit:
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    if method is Normalization.CENTER_L2:
        np.testing.assert_allclose(out, l2_normalize(x - x.mean(axis=0, dtype=np.float64)),
                                   atol=1e-6)


def test_normalization_with_a_given_mean_and_errors():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert normalize(x, "center", mean=np.array([1.0, 2.0])).tolist() == [[0, 0], [2, 2]]
    with pytest.raises(AlignmentError, match=r"mean has shape \(3,\) but rows have 2 dims"):
        normalize(x, "center", mean=np.zeros(3))
    with pytest.raises(AlignmentError, match="unknown normalization 'l1'; choose one of none"):
        normalize(x, "l1")
    with pytest.raises(AlignmentError, match="needs a 2-D matrix"):
        normalize(np.zeros(3), "l2")


# -- linear maps ------------------------------------------------------------------------------

def _rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def test_procrustes_recovers_a_known_rotation():
    x = _data(600, 16, seed=1)
    rotation = _rotation(16, seed=2)
    m = fit_linear_map(x, x @ rotation, MapMethod.PROCRUSTES, holdout=0.2, seed=3)
    np.testing.assert_allclose(m.weight, rotation, atol=1e-10)
    np.testing.assert_allclose(m.bias, 0, atol=1e-10)
    assert m.scale == pytest.approx(1.0)
    assert m.heldout_cosine == pytest.approx(1.0, abs=1e-12)
    assert m.train_cosine == pytest.approx(1.0, abs=1e-12)
    assert (m.n_anchors, m.n_heldout) == (600, 120)


def test_procrustes_with_scale_translation_and_noise():
    x = _data(800, 10, seed=4)
    rotation = _rotation(10, seed=5)
    rng = np.random.default_rng(6)
    y = 2.5 * x @ rotation + np.arange(10) + rng.standard_normal(x.shape) * 0.01
    m = fit_linear_map(x, y, "procrustes")
    assert m.scale == pytest.approx(2.5, rel=1e-3)
    np.testing.assert_allclose(m.weight / m.scale, rotation, atol=1e-3)
    np.testing.assert_allclose(m.weight.T @ m.weight, m.scale**2 * np.eye(10), atol=1e-9)
    assert m.heldout_cosine > 0.999


def test_procrustes_across_dimensions_is_semi_orthogonal():
    x = _data(500, 8, seed=7)
    embed = np.linalg.qr(np.random.default_rng(8).standard_normal((12, 8)))[0].T  # (8, 12)
    up = fit_linear_map(x, x @ embed, "procrustes")
    np.testing.assert_allclose(up.weight, embed, atol=1e-10)
    assert up.heldout_cosine == pytest.approx(1.0)
    down = fit_linear_map(x @ embed, x, "procrustes")
    np.testing.assert_allclose(down.weight.T @ down.weight, np.eye(8), atol=1e-10)
    assert down.heldout_cosine == pytest.approx(1.0)


def test_least_squares_recovers_a_known_map_across_dimensions():
    x = _data(700, 9, seed=9)
    w = np.random.default_rng(10).standard_normal((9, 5))
    m = fit_linear_map(x, x @ w + 3.0, MapMethod.LSTSQ, holdout=0.1)
    np.testing.assert_allclose(m.weight, w, atol=1e-9)
    np.testing.assert_allclose(m.bias, 3.0, atol=1e-9)
    assert m.heldout_cosine == pytest.approx(1.0, abs=1e-12)
    out = m.apply(x[:5].astype(np.float32))
    assert out.dtype == np.float32 and out.shape == (5, 5)
    np.testing.assert_allclose(out, x[:5] @ w + 3.0, rtol=1e-4, atol=1e-4)


def test_holdout_is_a_real_out_of_sample_estimate():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((60, 40)), rng.standard_normal((60, 40))  # unrelated spaces
    m = fit_linear_map(x, y, "lstsq", holdout=0.25)
    assert m.train_cosine > 0.5  # 40 free dims per output fit 60 points well...
    assert abs(m.heldout_cosine) < 0.3  # ...but do not generalize
    assert fit_linear_map(x, y, "lstsq", holdout=0).heldout_cosine is None


def test_holdout_is_deterministic_for_a_seed():
    x = _data(200, 6, seed=12)
    y = x @ np.random.default_rng(13).standard_normal((6, 6)) + np.random.default_rng(
        14).standard_normal((200, 6))
    a = fit_linear_map(x, y, "lstsq", seed=5).heldout_cosine
    assert a == fit_linear_map(x, y, "lstsq", seed=5).heldout_cosine
    assert a != fit_linear_map(x, y, "lstsq", seed=6).heldout_cosine


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_linear_map_save_load_round_trip(tmp_path, suffix):
    x = _data(100, 6, seed=15)
    m = fit_linear_map(x, x @ _rotation(6, 16), "procrustes")
    loaded = LinearMap.load(m.save(tmp_path / f"map{suffix}"))
    fields = ("method", "n_anchors", "n_heldout", "train_cosine", "heldout_cosine", "scale")
    assert [getattr(loaded, f) for f in fields] == [getattr(m, f) for f in fields]
    np.testing.assert_array_equal(loaded.weight, m.weight)
    np.testing.assert_array_equal(loaded.apply(x), m.apply(x))
    fit_pca(x, 2).save(tmp_path / f"pca{suffix}")
    with pytest.raises(FormatError, match="missing tensors weight, bias"):
        LinearMap.load(tmp_path / f"pca{suffix}")


def test_mean_cosine_is_zero_safe():
    assert mean_cosine(np.zeros((2, 3)), np.ones((2, 3))) == 0.0


@pytest.mark.parametrize(("x", "y", "kwargs", "words"), [
    (np.zeros((5, 3)), np.zeros((4, 3)), {}, "5 source anchors but 4 target anchors"),
    (np.zeros((1, 3)), np.zeros((1, 3)), {}, "needs at least 2 anchor pairs, got 1"),
    (np.zeros((5, 3)), np.zeros((5, 3)), {"holdout": 1.0}, r"holdout must be in \[0, 1\)"),
    (np.zeros((5, 3)), np.zeros((5, 3)), {"method": "cca"}, "unknown map method 'cca'"),
    (np.full((5, 3), np.inf), np.zeros((5, 3)), {}, "source anchors have NaN or infinite"),
    (np.zeros(5), np.zeros((5, 3)), {}, "needs a 2-D matrix"),
])
def test_linear_map_errors(x, y, kwargs, words):
    with pytest.raises(AlignmentError, match=words):
        fit_linear_map(x, y, **kwargs)


def test_linear_map_of_another_dimension():
    m = fit_linear_map(_data(50, 4), _data(50, 4, seed=1), "lstsq")
    with pytest.raises(AlignmentError, match="takes 4-dim rows but got 3-dim rows"):
        m.apply(np.zeros((2, 3)))


@pytest.mark.parametrize(("n", "d"), [(20, 50), (300, 12)])
def test_least_squares_matches_numpy_lstsq_including_underdetermined(n, d):
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, 3))
    m = fit_linear_map(x, y, "lstsq", holdout=0, center=False)
    np.testing.assert_allclose(m.weight, np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-9)
    np.testing.assert_allclose(m.bias, 0)


def test_least_squares_with_collinear_anchors():
    rng = np.random.default_rng(18)
    base = rng.standard_normal((100, 3))
    x = np.hstack([base, base[:, :1] * 2.0])  # the 4th column repeats the 1st
    y = base @ rng.standard_normal((3, 2))
    m = fit_linear_map(x, y, "lstsq", holdout=0, center=False)
    np.testing.assert_allclose(m.weight, np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-8)
    assert m.train_cosine == pytest.approx(1.0)


def test_align_modules_share_the_linalg_kernels():
    from embsurgeon import linalg
    from embsurgeon.align import api, neighbours, validate

    assert api.row_norms is linalg.row_norms
    assert validate.row_cosines is linalg.row_cosines
    assert not hasattr(neighbours, "_unit_rows") and not hasattr(validate, "_cosines")
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float16)
    assert l2_normalize(x).dtype == np.float16
    np.testing.assert_array_equal(l2_normalize(x), linalg.unit_rows(x).astype(np.float16))
