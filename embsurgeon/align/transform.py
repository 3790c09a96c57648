"""Dimension change and normalization: PCA, whitening, all-but-the-top, linear maps.

Fitted transforms are small frozen dataclasses that can be saved (``.safetensors`` or ``.npz``),
loaded and applied to another matrix of the same space, e.g. a PCA fitted on the aligned table
and applied to a later one, or a map learned on anchor pairs and applied to every source row.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
>>> fit_pca(x, 3).apply(x).shape
(100, 3)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import AlignmentError, FormatError, require
from embsurgeon.linalg import row_cosines, unit_rows

#: Version of the saved transform layout; bump on incompatible change.
TRANSFORM_FORMAT_VERSION = "1"
#: Matrices up to this many elements are fitted in float64 (1 GiB); larger ones in float32.
_FLOAT64_ELEMENTS = 1 << 27


# -- normalization ----------------------------------------------------------------------------

class Normalization(str, Enum):
    """How to normalize rows; values are the CLI spellings."""

    NONE = "none"
    CENTER = "center"  # subtract the mean row
    L2 = "l2"  # unit-length rows (zero rows stay zero)
    CENTER_L2 = "center-l2"  # both, in that order


DEFAULT_NORMALIZATION = Normalization.NONE


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero instead of becoming NaN.

    >>> import numpy as np
    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    return unit_rows(vectors, np.float64).astype(_float_dtype(vectors), copy=False)


def normalize(vectors: np.ndarray, method: Normalization | str,
              *, mean: np.ndarray | None = None) -> np.ndarray:
    """Apply ``method`` to the rows of ``vectors`` (a new array, same dtype).

    ``mean`` overrides the row mean used for centring (e.g. the mean of the copied rows).

    >>> import numpy as np
    >>> normalize(np.array([[1.0, 1.0], [3.0, 1.0]]), "center").tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    method = _enum(Normalization, method, "normalization")
    _check_matrix(vectors, "normalize")
    out = np.asarray(vectors, dtype=np.float64)
    if method in (Normalization.CENTER, Normalization.CENTER_L2):
        centre = out.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
        if centre.shape != (out.shape[1],):
            raise AlignmentError(
                f"normalize: mean has shape {centre.shape} but rows have {out.shape[1]} dims"
            )
        out = out - centre
    if method in (Normalization.L2, Normalization.CENTER_L2):
        out = l2_normalize(out)
    return out.astype(_float_dtype(vectors), copy=False)


# -- PCA and all-but-the-top ------------------------------------------------------------------

class ProjectionKind(str, Enum):
    PCA = "pca"  # keep the top components: (N, D) -> (N, n)
    ALL_BUT_THE_TOP = "all-but-the-top"  # remove the mean and the top components: (N, D) -> (N, D)


@dataclass(frozen=True, eq=False)
class Projection:
    """A fitted PCA or all-but-the-top transform.

    ``components`` are orthonormal rows (directions in the input space), strongest first.
    """

    kind: ProjectionKind
    mean: np.ndarray  # (D,) float64
    components: np.ndarray  # (n, D) float64
    explained_variance: np.ndarray  # (n,) float64: variance along each component
    whiten: bool = False

    @property
    def in_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[0]) if self.kind is ProjectionKind.PCA else self.in_dim

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Transform rows of the fitted space; float32 out (float64 in stays float64).

        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((50, 4))
        >>> p = fit_all_but_the_top(x, 1)
        >>> bool(np.allclose(p.apply(x) @ p.components[0], 0))
        True
        """
        _check_matrix(vectors, f"{self.kind.value} transform")
        if vectors.shape[1] != self.in_dim:
            raise AlignmentError(
                f"this {self.kind.value} transform was fitted on {self.in_dim}-dim rows but got "
                f"{vectors.shape[1]}-dim rows; apply it to the space it was fitted on"
            )
        dtype = np.float64 if vectors.dtype == np.float64 else np.float32
        comps = self.components.astype(dtype)
        centred = np.asarray(vectors, dtype=dtype) - self.mean.astype(dtype)  # (N, D)
        scores = centred @ comps.T  # (N, n)
        if self.kind is ProjectionKind.ALL_BUT_THE_TOP:
            return centred - scores @ comps
        if self.whiten:
            scale = np.sqrt(self.explained_variance)
            scores /= np.where(scale > 0, scale, 1.0).astype(dtype)
        return scores

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write to ``.safetensors`` or ``.npz`` (by suffix)."""
        meta = {"kind": self.kind.value, "whiten": str(self.whiten).lower()}
        return _save(path, {"mean": self.mean, "components": self.components,
                            "explained_variance": self.explained_variance}, meta, force)

    @classmethod
    def load(cls, path: str | Path) -> Projection:
        """Read what :meth:`save` wrote.

        >>> Projection.load("pca.safetensors").out_dim           # doctest: +SKIP
        128
        """
        arrays, meta = _load(path, ("mean", "components", "explained_variance"))
        try:
            kind = ProjectionKind(meta.get("kind", ""))
        except ValueError:
            raise FormatError(f"{path}: not a saved PCA/all-but-the-top transform "
                              f"(kind {meta.get('kind')!r})") from None
        return cls(kind, arrays["mean"], arrays["components"], arrays["explained_variance"],
                   whiten=meta.get("whiten") == "true")


def fit_pca(vectors: np.ndarray, n_components: int, *, whiten: bool = False,
            seed: int = 0) -> Projection:
    """Fit PCA to ``n_components`` dimensions with scikit-learn (signs made deterministic).

    With ``whiten`` the outputs are also divided by each component's standard deviation, so
    the transformed rows have identity covariance.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((200, 6))
    >>> fit_pca(x, 2, whiten=True).apply(x).std(axis=0, ddof=1).round(6).tolist()
    [1.0, 1.0]
    """
    work = _fit_matrix(vectors, "PCA")
    n, dim = work.shape
    if not 1 <= n_components <= min(n, dim):
        raise AlignmentError(
            f"PCA: cannot keep {n_components} components of {n} rows x {dim} dims; choose "
            f"between 1 and {min(n, dim)}"
        )
    decomposition = require("sklearn.decomposition", extra="align", purpose="PCA")
    pca = decomposition.PCA(n_components=n_components, whiten=whiten, random_state=seed)
    pca.fit(work)
    return Projection(ProjectionKind.PCA, pca.mean_.astype(np.float64),
                      pca.components_.astype(np.float64),
                      pca.explained_variance_.astype(np.float64), whiten=whiten)


def fit_all_but_the_top(vectors: np.ndarray, n_components: int, *, seed: int = 0) -> Projection:
    """"All-but-the-top" (Mu & Viswanath, 2018): remove the mean and the top directions.

    Word vectors share a large common mean and a few dominant directions that encode word
    frequency rather than meaning; removing them (n ~ D/100) improves similarity benchmarks.
    ``n_components = 0`` only removes the mean.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((100, 10))
    >>> fit_all_but_the_top(x, 2).apply(x).shape
    (100, 10)
    """
    work = _fit_matrix(vectors, "all-but-the-top")
    n, dim = work.shape
    if not 0 <= n_components < dim or n_components > n:
        raise AlignmentError(
            f"all-but-the-top: cannot remove {n_components} components of {n} rows x {dim} dims; "
            f"choose between 0 and {min(n, dim - 1)}"
        )
    if n_components == 0:
        return Projection(ProjectionKind.ALL_BUT_THE_TOP, work.mean(axis=0).astype(np.float64),
                          np.zeros((0, dim)), np.zeros(0))
    pca = fit_pca(work, n_components, seed=seed)
    return Projection(ProjectionKind.ALL_BUT_THE_TOP, pca.mean, pca.components,
                      pca.explained_variance)


def _fit_matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    _check_matrix(vectors, what)
    if vectors.shape[0] < 2:
        raise AlignmentError(f"{what}: needs at least 2 rows, got {vectors.shape[0]}")
    if not np.isfinite(vectors).all():
        raise AlignmentError(f"{what}: the matrix has NaN or infinite values; fix or drop them")
    # Float64 where it fits in memory: centring float32 data in float32 loses small components.
    dtype = np.float64 if vectors.size <= _FLOAT64_ELEMENTS else np.float32
    return np.asarray(vectors, dtype=dtype)


# -- linear maps between spaces ----------------------------------------------------------------

class MapMethod(str, Enum):
    """How to learn a map from one space onto another; values are the CLI spellings."""

    LSTSQ = "lstsq"  # any linear (affine) map; works across dimensions
    PROCRUSTES = "procrustes"  # a scaled rotation: keeps angles, less prone to overfit


DEFAULT_MAP_METHOD = MapMethod.PROCRUSTES
DEFAULT_HOLDOUT = 0.1


@dataclass(frozen=True, eq=False)
class LinearMap:
    """``y = x @ weight + bias``, learned on anchor pairs, with its measured quality.

    ``train_cosine`` is the mean cosine between mapped and true rows over all anchors (the
    returned map is fitted on all of them); ``heldout_cosine`` comes from a separate fit on
    the anchors minus a random held-out share, evaluated on that share (None without holdout).
    For Procrustes ``weight`` is ``scale`` times a (semi-)orthogonal matrix.
    """

    weight: np.ndarray  # (Ds, Dt) float64
    bias: np.ndarray  # (Dt,) float64
    method: MapMethod
    n_anchors: int
    n_heldout: int
    train_cosine: float
    heldout_cosine: float | None
    scale: float = 1.0

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Map rows of the source space into the target space (float32 out).

        >>> import numpy as np
        >>> m = fit_linear_map(np.eye(3), 2 * np.eye(3), "lstsq", holdout=0)
        >>> m.apply(np.array([[1.0, 0.0, 0.0]])).round(6).tolist()
        [[2.0, 0.0, 0.0]]
        """
        _check_matrix(vectors, "linear map")
        if vectors.shape[1] != self.in_dim:
            raise AlignmentError(
                f"this {self.method.value} map takes {self.in_dim}-dim rows but got "
                f"{vectors.shape[1]}-dim rows; apply it to the space it was fitted on"
            )
        out = np.asarray(vectors, dtype=np.float32) @ self.weight.astype(np.float32)
        return out + self.bias.astype(np.float32)

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write to ``.safetensors`` or ``.npz`` (by suffix)."""
        meta = {"kind": "linear-map", "method": self.method.value,
                "n_anchors": str(self.n_anchors), "n_heldout": str(self.n_heldout),
                "train_cosine": repr(self.train_cosine), "scale": repr(self.scale),
                "heldout_cosine": "" if self.heldout_cosine is None
                else repr(self.heldout_cosine)}
        return _save(path, {"weight": self.weight, "bias": self.bias}, meta, force)

    @classmethod
    def load(cls, path: str | Path) -> LinearMap:
        """Read what :meth:`save` wrote."""
        arrays, meta = _load(path, ("weight", "bias"))
        try:
            return cls(arrays["weight"], arrays["bias"], MapMethod(meta["method"]),
                       int(meta["n_anchors"]), int(meta["n_heldout"]),
                       float(meta["train_cosine"]),
                       float(meta["heldout_cosine"]) if meta["heldout_cosine"] else None,
                       float(meta["scale"]))
        except (KeyError, ValueError) as exc:
            raise FormatError(f"{path}: not a saved linear map ({exc})") from exc


def fit_linear_map(source: np.ndarray, target: np.ndarray,
                   method: MapMethod | str = DEFAULT_MAP_METHOD, *,
                   holdout: float = DEFAULT_HOLDOUT, seed: int = 0,
                   center: bool = True) -> LinearMap:
    """Learn a map from rows of ``source`` (N, Ds) onto the paired rows of ``target`` (N, Dt).

    ``lstsq`` is ordinary least squares (any affine map, any dimensions). ``procrustes`` is
    the best rotation plus one global scale (a similarity transform) after centring; when
    Ds != Dt it is the best semi-orthogonal map from the thin SVD: an isometry into a
    subspace when Ds < Dt, an orthogonal projection when Ds > Dt. Fitting runs in float64.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((500, 16))
    >>> q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    >>> m = fit_linear_map(x, x @ q, "procrustes")
    >>> round(m.heldout_cosine, 6)
    1.0
    """
    kind: MapMethod = _enum(MapMethod, method, "map method")
    x = _anchor_matrix(source, "source")
    y = _anchor_matrix(target, "target")
    if x.shape[0] != y.shape[0]:
        raise AlignmentError(
            f"linear map: {x.shape[0]} source anchors but {y.shape[0]} target anchors; "
            "pass the rows of each anchor pair in the same order"
        )
    n = x.shape[0]
    if n < 2:
        raise AlignmentError(f"linear map: needs at least 2 anchor pairs, got {n}")
    if not 0 <= holdout < 1:
        raise AlignmentError(f"linear map: holdout must be in [0, 1), got {holdout}")
    n_held = min(n - 2, max(1, round(n * holdout))) if holdout > 0 else 0
    heldout_cosine = None
    if n_held > 0:
        order = np.random.default_rng(seed).permutation(n)
        held, train = order[:n_held], order[n_held:]
        w, b, _ = _fit(x[train], y[train], kind, center)
        heldout_cosine = mean_cosine(x[held] @ w + b, y[held])
    w, b, scale = _fit(x, y, kind, center)
    return LinearMap(w, b, kind, n, n_held, mean_cosine(x @ w + b, y), heldout_cosine, scale)


def _fit(x: np.ndarray, y: np.ndarray, method: MapMethod,
         center: bool) -> tuple[np.ndarray, np.ndarray, float]:
    mx = x.mean(axis=0) if center else np.zeros(x.shape[1])
    my = y.mean(axis=0) if center else np.zeros(y.shape[1])
    xc, yc = x - mx, y - my  # (N, Ds), (N, Dt)
    if method is MapMethod.LSTSQ:
        w = _least_squares(xc, yc)  # (Ds, Dt)
        scale = 1.0
    else:
        u, s, vt = np.linalg.svd(xc.T @ yc, full_matrices=False)  # (Ds, r), (r,), (r, Dt)
        denom = float(np.einsum("ij,ij->", xc, xc))
        scale = float(s.sum() / denom) if denom > 0 else 1.0
        w = scale * (u @ vt)
    return w, my - mx @ w, scale


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minimum-norm argmin_W |x W - y| through the eigen-decomposed Gram matrix.

    One pass over the (N, Ds) anchors instead of an SVD of them (about 10x faster at 30k
    anchors). Directions whose Gram eigenvalue is below float64 resolution are dropped, which
    gives the minimum-norm solution when the anchors are rank-deficient (N < Ds, collinear).
    """
    values, vectors = np.linalg.eigh(x.T @ x)  # (Ds,), (Ds, Ds)
    keep = values > max(float(values[-1]), 0.0) * x.shape[1] * np.finfo(np.float64).eps
    pseudo_inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return pseudo_inverse @ (x.T @ y)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine of two (N, D) matrices; a zero row counts as cosine 0.

    >>> import numpy as np
    >>> mean_cosine(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [1.0, 1.0]]))
    0.5
    """
    return float(np.mean(row_cosines(a, b)))


def _anchor_matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    _check_matrix(vectors, f"linear map {what}")
    if not np.isfinite(vectors).all():
        raise AlignmentError(f"linear map: the {what} anchors have NaN or infinite values")
    return np.asarray(vectors, dtype=np.float64)


# -- shared helpers ------------------------------------------------------------------------

def _enum(kind: Any, value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise AlignmentError(f"unknown {what} {value!r}; choose one of {choices}") from None


def _check_matrix(vectors: np.ndarray, what: str) -> None:
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        shape = getattr(vectors, "shape", None)
        raise AlignmentError(f"{what}: needs a 2-D matrix (rows x dims), got shape {shape}")


def _float_dtype(vectors: np.ndarray) -> Any:
    return vectors.dtype if vectors.dtype.kind == "f" else np.float64


def _save(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, str],
          force: bool) -> Path:
    from embsurgeon.io.atomic import atomic_paths

    path = Path(path)
    if path.suffix not in (".safetensors", ".npz"):
        raise AlignmentError(
            f"{path}: save transforms as .safetensors or .npz, not {path.suffix or 'no suffix'}"
        )
    meta = {"format_version": TRANSFORM_FORMAT_VERSION, **meta}
    contiguous = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
    with atomic_paths(path, force=force) as (tmp,):
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(contiguous, str(tmp), metadata=meta)
        else:
            with open(tmp, "wb") as handle:
                contiguous["__meta__"] = np.array(json.dumps(meta))
                np.savez(handle, **contiguous)  # type: ignore[arg-type]
    return path


def _load(path: str | Path,
          names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                meta = dict(handle.metadata() or {})
                arrays = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        except (OSError, ValueError) as exc:
            raise FormatError(f"{path}: not a readable safetensors file ({exc})") from exc
    elif path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files if k != "__meta__"}
                meta = json.loads(str(data["__meta__"])) if "__meta__" in data.files else {}
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise FormatError(f"{path}: not a readable .npz transform ({exc})") from exc
    else:
        raise FormatError(f"{path}: transforms are .safetensors or .npz files")
    if meta.get("format_version") != TRANSFORM_FORMAT_VERSION:
        raise FormatError(
            f"{path}: transform format version {meta.get('format_version')!r}, expected "
            f"{TRANSFORM_FORMAT_VERSION!r}; was it written by embsurgeon?"
        )
    missing = [name for name in names if name not in arrays]
    if missing:
        raise FormatError(f"{path}: missing tensors {', '.join(missing)}")
    return arrays, meta
