"""Exact top-k search in PyTorch tiles: the engine behind ``neighbors`` and ``check``.

A tile of queries times a block of database rows is one matmul; each tile is cut down to its
top ``k + 1`` per row and merged into a running top ``k``, so the full ``Q x N`` score matrix
never exists. Tile sizes come from a memory budget (:func:`plan_tiles`), which bounds the
working memory whatever the table size: the database is normalized one block at a time and
never copied whole (on CUDA, one block at a time is moved to the device).

Results are exact and deterministic: among equal scores the lower row id comes first, also
when a tie straddles the k-th place. Zero and non-finite rows score 0 against everything
(cosine) instead of producing NaN. On CPUs with native bfloat16 a float32 cosine search takes
candidates from a bfloat16 pass and certifies them (:func:`_search_certified`); the answer is
still the float32 one.

>>> import numpy as np
>>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0, 0]], dtype=np.float32)
>>> hits = search(x, x, k=2, exclude=np.arange(4)[:, None])
>>> hits.ids.tolist()
[[1, 2], [0, 2], [1, 0], [0, 1]]
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from embsurgeon.errors import DtypeError, SimilarityError

if TYPE_CHECKING:
    import torch


class Metric(str, Enum):
    """How a query row scores a database row; values are the ``--metric`` spellings."""

    COSINE = "cosine"
    DOT = "dot"


class Device(str, Enum):
    """Where the search runs (``--device``); ``auto`` picks CUDA when torch sees a device."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Precision(str, Enum):
    """The dtype of the score matmul (``--precision``); half precisions only on CUDA."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


DEFAULT_K = 10
#: The score matmul's precision unless asked (``--precision``): exact float32 everywhere.
DEFAULT_PRECISION = Precision.FLOAT32
DEFAULT_METRIC = Metric.COSINE
#: CUDA when torch sees a device, else the CPU (``--device``).
DEFAULT_DEVICE = Device.AUTO
#: Working memory for tiles, beyond the input table and the (Q, k) results.
DEFAULT_MEMORY_BUDGET = 256 * 2**20
#: Whole-width tiles (one top-k per query, no merging) are used when at least this many query
#: rows fit beside the full database block; below that BLAS loses speed on thin tiles.
_MIN_FULL_WIDTH_ROWS = 256
#: Query rows a tile aims for when the database must be split into blocks.
_PREFERRED_QUERY_ROWS = 1024
_ELEMENT_BYTES = {Precision.FLOAT32: 4, Precision.FLOAT16: 2, Precision.BFLOAT16: 2}
#: Bytes per query row for top-k values, ids and merge temporaries.
_PER_ROW_BYTES = 64
#: Bytes per score element while breaking boundary ties (bool masks plus an int64 cumsum).
_TIE_BYTES_PER_ELEMENT = 20
#: CPU flags that make bfloat16 matmuls fast enough for the certified candidate pass.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Candidates per query from the bfloat16 pass (at least; 2k when k is larger). 64 certified
#: every query of the clustered benchmark table, where 32 left 30% to recompute.
_MIN_CANDIDATES = 64


@dataclass(frozen=True)
class TilePlan:
    """How a search cuts its work: ``query_rows`` x ``database_rows`` scores per tile."""

    query_rows: int
    database_rows: int
    dim: int
    k: int
    element_bytes: int

    @property
    def nbytes(self) -> int:
        """Peak working memory of one tile, as :func:`plan_tiles` accounts for it."""
        return _tile_bytes(self.query_rows, self.database_rows, self.dim, self.k,
                           self.element_bytes)


@dataclass(frozen=True)
class Hits:
    """Raw search results: row ids into the database and their scores, best first."""

    ids: np.ndarray  # (Q, k) int64
    scores: np.ndarray  # (Q, k) float32
    plan: TilePlan | None = None  # None when nothing had to be computed


def _tile_bytes(bq: int, bd: int, dim: int, k: int, eb: int) -> int:
    # Staged rows in float32, plus a cast copy for half precision (see _Staging); the score
    # tile gets a quarter on top for the tie-breaking temporaries.
    row_bytes = dim * (4 + (eb if eb < 4 else 0))
    return row_bytes * (bq + bd) + bq * bd * eb * 5 // 4 + bq * (k + 2) * _PER_ROW_BYTES


def plan_tiles(n_queries: int, n_database: int, dim: int, k: int, *,
               memory_budget: int = DEFAULT_MEMORY_BUDGET,
               precision: Precision | str = DEFAULT_PRECISION) -> TilePlan:
    """The largest tiles whose working memory fits ``memory_budget`` bytes.

    Whole database rows per tile are preferred (one top-k per query, no merging); otherwise
    the database is cut into blocks beside ~1k query rows, or into square tiles when the
    budget is smaller still.

    >>> plan = plan_tiles(100_000, 100_000, 300, 10, memory_budget=256 * 2**20)
    >>> plan.database_rows, plan.query_rows, plan.nbytes <= 256 * 2**20
    (100000, 295, True)
    """
    eb = _ELEMENT_BYTES[Precision(precision)]
    n_queries, n_database = max(1, n_queries), max(1, n_database)
    smallest = _tile_bytes(1, 1, dim, k, eb)
    if memory_budget < smallest:
        raise SimilarityError(
            f"memory budget of {memory_budget} bytes is too small for {dim}-dimensional "
            f"vectors; give at least {smallest} bytes"
        )
    full_q = min(n_queries, _MIN_FULL_WIDTH_ROWS)
    if _tile_bytes(full_q, n_database, dim, k, eb) <= memory_budget:
        bd = n_database
    else:
        want_q = min(n_queries, _PREFERRED_QUERY_ROWS)
        bd = _largest(lambda d: _tile_bytes(want_q, d, dim, k, eb) <= memory_budget, n_database)
    if bd == 0:  # not even one full-width-ish tile of want_q rows: square tiles instead
        side = _largest(lambda s: _tile_bytes(s, s, dim, k, eb) <= memory_budget,
                        max(n_queries, n_database))
        bd = min(side, n_database)
    bq = _largest(lambda q: _tile_bytes(q, bd, dim, k, eb) <= memory_budget, n_queries)
    return TilePlan(max(1, bq), max(1, bd), dim, k, eb)


def _largest(fits: Any, upper: int) -> int:
    """The largest n in [0, upper] with fits(n) (fits is monotone); 0 if none."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def resolve_device(device: Device | str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu``; checks ``cuda``."""
    import torch

    device = Device(device)
    if device is Device.AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device is Device.CUDA and not torch.cuda.is_available():
        raise SimilarityError(
            "--device cuda: torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
            "use --device cpu or auto"
        )
    return device.value


def _torch_dtype(precision: Precision) -> torch.dtype:
    import torch

    return {Precision.FLOAT32: torch.float32, Precision.FLOAT16: torch.float16,
            Precision.BFLOAT16: torch.bfloat16}[precision]


class _Staging:
    """Reused buffers for ``rows`` prepared rows: float32 and, for half precision, the cast.

    Every tile reuses the same memory: fresh block-sized allocations per tile would cost page
    faults, and glibc's adaptive mmap threshold would let freed blocks pile up beyond the
    budget.
    """

    def __init__(self, rows: int, dim: int, device: str, dtype: torch.dtype) -> None:
        import torch

        self.dim = dim
        self.f32 = torch.empty(rows * dim, dtype=torch.float32, device=device)
        self.cast = (None if dtype == torch.float32
                     else torch.empty(rows * dim, dtype=dtype, device=device))

    def prepare(self, rows: np.ndarray | torch.Tensor, metric: Metric,
                take: torch.Tensor | None = None) -> torch.Tensor:
        """Rows (or, with ``take``, the rows ``take`` of ``rows``) as a (B, D) tensor in the
        compute dtype, unit length for cosine; zero and non-finite rows become zero rows
        (they then score 0, never NaN)."""
        import torch

        source = rows if isinstance(rows, torch.Tensor) else as_tensor(rows)
        n = source.shape[0] if take is None else take.shape[0]
        x = self.f32[:n * self.dim].view(n, self.dim)  # (B, D)
        if take is None:
            x.copy_(source)  # converts dtype and device
        elif source.dtype == torch.float32 and source.device == x.device:
            torch.index_select(source, 0, take, out=x)  # multi-threaded gather, no temporary
        else:
            x.copy_(source.index_select(0, take.to(source.device)))
        if metric is Metric.COSINE:
            norms = torch.linalg.vector_norm(x, dim=1)  # (B,)
            bad = ~(torch.isfinite(norms) & (norms > 0))
            x.mul_(norms.reciprocal_()[:, None])  # inf/nan on bad rows, zeroed next
            x.masked_fill_(bad[:, None], 0.0)
        else:
            bad = ~torch.isfinite(x).all(dim=1)
            if bool(bad.any()):
                x.masked_fill_(bad[:, None], 0.0)
        if self.cast is None:
            return x
        return self.cast[:n * self.dim].view(n, self.dim).copy_(x)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory (never written through)."""
    import torch

    with warnings.catch_warnings():
        # Read-only (e.g. mapped) tables are fine: embsurgeon only ever reads the view.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array))


def _queries_resident(device: str, nbytes: int, memory_budget: int) -> bool:
    """On CUDA the prepared queries stay on the device when they take at most half the
    budget: every database block then meets them without a host-to-device copy per tile."""
    return device != "cpu" and 2 * nbytes <= memory_budget


def _break_ties(scores: torch.Tensor, vals: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor,
                k: int, chunk_rows: int) -> None:
    """For ``rows`` whose k-th score ties with a score outside the top k, choose the tied
    columns with the lowest ids (in place on ``vals``/``ids``)."""
    for start in range(0, len(rows), chunk_rows):
        r = rows[start:start + chunk_rows]
        sub = scores[r]  # (R, B)
        kth = vals[r, k - 1:k]  # (R, 1)
        above = sub > kth
        need = k - above.sum(dim=1, keepdim=True)  # (R, 1), >= 1
        tied = sub == kth
        chosen = above | (tied & (tied.cumsum(dim=1) <= need))  # exactly k per row
        cols = chosen.nonzero()[:, 1].view(len(r), k)  # row-major: ascending ids per row
        ids[r] = cols
        vals[r] = sub.gather(1, cols)


def _tile_topk(scores: torch.Tensor, k: int, chunk_rows: int, exact_ties: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k of each row of a (B, T) tile, sorted by score then ascending column.

    Without ``exact_ties``, which member of a tie at the k-th place is kept is torch's choice
    (enough for candidate passes, whose ties are settled later).
    """
    import torch

    width = scores.shape[1]
    take = min(k + 1, width)
    vals, ids = torch.topk(scores, take, dim=1)  # (B, take)
    if take > k and exact_ties:
        # torch.topk picks an arbitrary member of a tie; the (k+1)-th value says whether the
        # k-th place is contested at all, so the exact fix runs only where it is.
        contested = (vals[:, k - 1] == vals[:, k]).nonzero().flatten()
        vals, ids = vals[:, :k].contiguous(), ids[:, :k].contiguous()
        if len(contested):
            _break_ties(scores, vals, ids, contested, k, chunk_rows)
    elif take > k:
        vals, ids = vals[:, :k], ids[:, :k]
    ids, order = ids.sort(dim=1)
    vals = vals.gather(1, order)
    vals, order = vals.sort(dim=1, descending=True, stable=True)
    return vals, ids.gather(1, order)


def search(
    queries: np.ndarray,
    database: np.ndarray,
    k: int = DEFAULT_K,
    *,
    metric: Metric | str = DEFAULT_METRIC,
    exclude: np.ndarray | None = None,
    column_penalty: np.ndarray | None = None,
    device: Device | str = DEFAULT_DEVICE,
    precision: Precision | str = DEFAULT_PRECISION,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Hits:
    """Exact top-``k`` database rows for every query row.

    ``exclude`` is a (Q, m) array of database row ids each query must not return (its own
    row, say); -1 pads. ``column_penalty`` (N,) is subtracted from every score in that column
    before ranking (CSLS uses it). ``k`` is clipped to the rows available, ``N - m``.

    >>> import numpy as np
    >>> db = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    >>> search(db[:1], db, k=2, metric="dot").ids.tolist()
    [[0, 1]]
    """
    import torch

    metric, precision = Metric(metric), Precision(precision)
    dev = resolve_device(device)
    if dev == "cpu" and precision is not Precision.FLOAT32:
        raise DtypeError(
            f"precision {precision.value} needs a CUDA device; on the CPU the search runs in "
            "float32"
        )
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise SimilarityError(
            f"queries of shape {queries.shape} cannot be searched in a table of shape "
            f"{database.shape}; the dimensions must agree"
        )
    if k < 1:
        raise SimilarityError(f"k must be at least 1, got {k}")
    n_q, n_db = queries.shape[0], database.shape[0]
    if exclude is not None and exclude.shape[0] != n_q:
        raise SimilarityError(f"exclude has {exclude.shape[0]} rows for {n_q} queries")
    n_excluded = 0 if exclude is None else exclude.shape[1]
    k = max(0, min(k, n_db - n_excluded))
    if n_q == 0 or k == 0:
        return Hits(np.zeros((n_q, k), np.int64), np.zeros((n_q, k), np.float32))

    excl = None if exclude is None else torch.as_tensor(exclude, dtype=torch.int64).to(dev)
    if (dev == "cpu" and precision is Precision.FLOAT32 and metric is Metric.COSINE
            and column_penalty is None and cpu_has_fast_bfloat16()):
        return _search_certified(queries, database, k, excl, memory_budget)
    vals, ids, plan = _search_tiles(queries, database, k, metric, excl, column_penalty, dev,
                                    precision, memory_budget)
    return Hits(ids.cpu().numpy(), vals.cpu().numpy(), plan)


@functools.cache
def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX; read on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return bool(set(line.partition(":")[2].split()) & _BF16_FLAGS)
    except OSError:
        pass
    return False


def _bf16_cosine_error(dim: int) -> float:
    """Bound on |bfloat16 cosine - float32 cosine| for unit vectors.

    Rounding both inputs to bfloat16 (unit roundoff u = 2^-8) moves each product by at most
    (2u + u^2)|q_i d_i|, which sums to at most 2u + u^2 by Cauchy-Schwarz; storing the score in
    bfloat16 adds u; float32 accumulation adds at most dim * 2^-24. Doubled for headroom: it
    only decides how often a query is recomputed, never what is returned.
    """
    u = 2.0**-8
    return 2 * (3 * u + u * u + dim * 2.0**-24)


def _search_certified(queries: np.ndarray, database: np.ndarray, k: int,
                      excl: torch.Tensor | None, memory_budget: int) -> Hits:
    """Exact cosine top-k on CPUs with native bfloat16: candidates from a bfloat16 pass
    (several times the float32 matmul speed), rescored in float32. A query's result is
    certified when its k-th exact score beats the last candidate's bfloat16 score by more
    than the bfloat16 error bound (then no other row can reach the top k); any query that is
    not certified is recomputed by the plain float32 search. The answer is the float32 one.
    """
    n_db, dim = database.shape
    n_excluded = 0 if excl is None else excl.shape[1]
    n_cand = min(max(_MIN_CANDIDATES, 2 * k), n_db - n_excluded)
    if n_cand <= k or memory_budget // 2 < _tile_bytes(1, 1, dim, n_cand, 2):
        # every row is a candidate anyway, or the budget is too small for a candidate pass
        vals, ids, plan = _search_tiles(queries, database, k, Metric.COSINE, excl, None,
                                        "cpu", Precision.FLOAT32, memory_budget)
        return Hits(ids.numpy(), vals.numpy(), plan)
    # The two passes split the budget: memory the first frees may stay with the allocator.
    half = memory_budget // 2
    # Candidate ties need no settling: any tie straddling the cut fails certification below.
    cand_vals, cand_ids, plan = _search_tiles(queries, database, n_cand, Metric.COSINE, excl,
                                              None, "cpu", Precision.BFLOAT16, half,
                                              exact_ties=False)
    bound = cand_vals[:, -1] + _bf16_cosine_error(dim)  # (Q,) no other row scores above
    del cand_vals
    out_vals, out_ids, certified = _rescore(queries, database, cand_ids, bound, k, half)
    redo = (~certified).nonzero().flatten()
    if len(redo):
        vals, ids, _ = _search_tiles(queries[redo.numpy()], database, k, Metric.COSINE,
                                     None if excl is None else excl[redo], None, "cpu",
                                     Precision.FLOAT32, half)
        out_vals[redo], out_ids[redo] = vals, ids
    return Hits(out_ids.numpy(), out_vals.numpy(), plan)


def _rescore(queries: np.ndarray, database: np.ndarray, cand_ids: torch.Tensor,
             bound: torch.Tensor, k: int, memory_budget: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 cosines of each query's candidates: the top k (scores, ids) and whether they
    are certified (k-th score above ``bound``). Its buffers are gone when it returns."""
    import torch

    n_q, n_cand = cand_ids.shape
    dim = database.shape[1]
    out_vals = torch.empty((n_q, k), dtype=torch.float32)
    out_ids = torch.empty((n_q, k), dtype=torch.int64)
    certified = torch.empty(n_q, dtype=torch.bool)
    rows = max(1, min(n_q, memory_budget // (4 * (n_cand + 1) * dim)))  # candidates + queries
    query_stage = _Staging(rows, dim, "cpu", torch.float32)
    cand_stage = _Staging(rows * n_cand, dim, "cpu", torch.float32)
    table = as_tensor(database)  # (N, D), shared memory
    with torch.inference_mode():
        for q0 in range(0, n_q, rows):
            q1 = min(q0 + rows, n_q)
            ids = cand_ids[q0:q1].sort(dim=1).values  # (R, C) ascending: ties keep id order
            qv = query_stage.prepare(queries[q0:q1], Metric.COSINE)  # (R, D)
            cv = cand_stage.prepare(table, Metric.COSINE, take=ids.flatten())  # (R * C, D)
            exact = torch.bmm(cv.view(q1 - q0, n_cand, dim), qv[:, :, None])[:, :, 0]  # (R, C)
            exact, order = exact.sort(dim=1, descending=True, stable=True)
            out_vals[q0:q1] = exact[:, :k]
            out_ids[q0:q1] = ids.gather(1, order[:, :k])
            certified[q0:q1] = exact[:, k - 1] > bound[q0:q1]
    return out_vals, out_ids, certified


def _search_tiles(queries: np.ndarray, database: np.ndarray, k: int, metric: Metric,
                  excl: torch.Tensor | None, column_penalty: np.ndarray | None, dev: str,
                  precision: Precision, memory_budget: int, exact_ties: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, TilePlan]:
    """The tiled search proper: (Q, k) scores and ids on ``dev``, best first."""
    import torch

    n_q, n_db, dim = queries.shape[0], database.shape[0], database.shape[1]
    dtype = _torch_dtype(precision)
    eb = _ELEMENT_BYTES[precision]
    resident = _queries_resident(dev, n_q * dim * eb, memory_budget)
    tile_budget = memory_budget - (n_q * dim * eb if resident else 0)
    plan = plan_tiles(n_q, n_db, dim, k, memory_budget=tile_budget, precision=precision)
    bq, bd = plan.query_rows, plan.database_rows
    chunk_rows = max(1, bq * plan.element_bytes // (4 * _TIE_BYTES_PER_ELEMENT))
    best_vals = torch.full((n_q, k), float("-inf"), dtype=torch.float32, device=dev)
    best_ids = torch.full((n_q, k), n_db, dtype=torch.int64, device=dev)
    penalty = None if column_penalty is None else (
        torch.as_tensor(np.asarray(column_penalty, np.float32)).to(dev, dtype))
    buffer = torch.empty(bq * bd, dtype=dtype, device=dev)  # scores, reused by every tile
    block_stage = _Staging(bd, dim, dev, dtype)
    query_stage = _Staging(bq, dim, dev, dtype)
    staged = None
    if resident:
        staged = torch.empty((n_q, dim), dtype=dtype, device=dev)  # (Q, D)
        for q0 in range(0, n_q, bq):
            staged[q0:q0 + bq] = query_stage.prepare(queries[q0:q0 + bq], metric)

    with torch.inference_mode():
        for d0 in range(0, n_db, bd):
            d1 = min(d0 + bd, n_db)
            block = block_stage.prepare(database[d0:d1], metric)  # (Bd, D)
            for q0 in range(0, n_q, bq):
                q1 = min(q0 + bq, n_q)
                tile = buffer[:(q1 - q0) * (d1 - d0)].view(q1 - q0, d1 - d0)
                query_rows = (staged[q0:q1] if staged is not None
                              else query_stage.prepare(queries[q0:q1], metric))  # (Bq, D)
                torch.mm(query_rows, block.T, out=tile)
                if penalty is not None:
                    tile -= penalty[d0:d1]
                if excl is not None:
                    local = excl[q0:q1] - d0  # (Bq, m)
                    hit = ((local >= 0) & (local < d1 - d0)).nonzero()
                    if len(hit):
                        tile[hit[:, 0], local[hit[:, 0], hit[:, 1]]] = float("-inf")
                vals, ids = _tile_topk(tile, k, chunk_rows, exact_ties)
                ids += d0
                if d0 == 0 and vals.shape[1] == k:
                    best_vals[q0:q1], best_ids[q0:q1] = vals.float(), ids
                    continue
                # Earlier blocks hold lower ids, so a stable sort keeps them first among ties.
                cand_vals = torch.cat([best_vals[q0:q1], vals.float()], dim=1)
                cand_ids = torch.cat([best_ids[q0:q1], ids], dim=1)
                cand_vals, order = cand_vals.sort(dim=1, descending=True, stable=True)
                best_vals[q0:q1] = cand_vals[:, :k]
                best_ids[q0:q1] = cand_ids.gather(1, order[:, :k])
    return best_vals, best_ids, plan
