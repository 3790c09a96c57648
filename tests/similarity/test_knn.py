import numpy as np
import pytest
import torch
from knn_reference import assert_matches, brute_force

from embsurgeon.errors import DtypeError
from embsurgeon.similarity import knn
from embsurgeon.similarity.knn import (
    SimilarityError,
    TilePlan,
    plan_tiles,
    resolve_device,
    search,
)

RNG = np.random.default_rng(7)
GAUSS = RNG.standard_normal((300, 16)).astype(np.float32)
# Small integers: dot products are exact in float32, so ties are real ties.
INTS = RNG.integers(-2, 3, size=(400, 6)).astype(np.float32)
BUDGETS = [None, 60_000, 8_000, 3_000]  # None: one tile; then ever smaller tiles


@pytest.fixture(autouse=True, params=["float32", "bf16-certified"])
def cpu_path(request, monkeypatch):
    """Every test runs on both CPU paths: plain float32 tiles, and bfloat16 candidates
    rescored in float32 (taken automatically on CPUs with native bfloat16)."""
    monkeypatch.setattr(knn, "cpu_has_fast_bfloat16", lambda: request.param != "float32")
    return request.param


def run(queries, database, k, budget=None, **kw):
    if budget is not None:
        kw["memory_budget"] = budget
    return search(queries, database, k, device="cpu", **kw)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_equals_brute_force(metric, budget):
    hits = run(GAUSS[:50], GAUSS, 10, budget, metric=metric)
    assert_matches(hits, brute_force(GAUSS[:50], GAUSS, 10, metric=metric))


@pytest.mark.parametrize("budget", BUDGETS)
def test_ties_go_to_the_lower_row_id(budget):
    exclude = np.arange(len(INTS))[:, None]
    hits = run(INTS, INTS, 7, budget, metric="dot", exclude=exclude)
    ref = brute_force(INTS, INTS, 7, metric="dot", exclude=exclude)
    assert_matches(hits, ref, atol=0, exact_ids=True)


def test_duplicate_rows_tie_across_tile_boundaries():
    db = np.repeat(np.eye(3, dtype=np.float32), 20, axis=0)  # 20 copies of each basis vector
    hits = run(db[[0, 25, 59]], db, 5, 1_000)
    assert hits.plan.database_rows < len(db)
    assert hits.ids.tolist() == [[0, 1, 2, 3, 4], [20, 21, 22, 23, 24], [40, 41, 42, 43, 44]]
    np.testing.assert_array_equal(hits.scores, 1.0)


def test_query_excludes_itself_only_when_asked():
    own = np.arange(50)[:, None]
    assert (run(GAUSS[:50], GAUSS, 1).ids[:, 0] == np.arange(50)).all()
    assert (run(GAUSS[:50], GAUSS, 3, exclude=own).ids != own).all()


def test_several_exclusions_per_query():
    exclude = np.array([[0, 1, 2], [5, -1, -1]])
    hits = run(INTS[:2], INTS, 4, metric="dot", exclude=exclude)
    ref = brute_force(INTS[:2], INTS, 4, metric="dot", exclude=exclude)
    assert_matches(hits, ref, atol=0, exact_ids=True)


def test_cosine_differs_from_dot():
    db = np.array([[1, 0], [10, 10], [0, 1]], dtype=np.float32)
    q = np.array([[1, 0.1]], dtype=np.float32)
    assert run(q, db, 1).ids.tolist() == [[0]]
    assert run(q, db, 1, metric="dot").ids.tolist() == [[1]]


def test_zero_and_nonfinite_rows_score_zero_never_nan():
    db = GAUSS[:20].copy()
    db[3] = 0
    db[7, 2] = np.nan
    db[9, 0] = np.inf
    for metric in ("cosine", "dot"):
        hits = run(db, db, 19, metric=metric, exclude=np.arange(20)[:, None])
        assert np.isfinite(hits.scores).all()
        assert_matches(hits, brute_force(db, db, 19, metric=metric,
                                         exclude=np.arange(20)[:, None]))
        # A zero row ties at 0 with every row: its neighbours are the rows in id order.
        assert hits.ids[3].tolist() == [i for i in range(20) if i != 3]
        np.testing.assert_array_equal(hits.scores[3], 0.0)


def test_k_larger_than_the_table_is_clipped():
    hits = run(GAUSS[:4], GAUSS[:6], 50)
    assert hits.ids.shape == (4, 6)
    hits = run(GAUSS[:4], GAUSS[:6], 50, exclude=np.arange(4)[:, None])
    assert hits.ids.shape == (4, 5)
    assert_matches(hits, brute_force(GAUSS[:4], GAUSS[:6], 5, exclude=np.arange(4)[:, None]))


def test_empty_queries_and_empty_results():
    hits = run(np.zeros((0, 16), np.float32), GAUSS, 10)
    assert hits.ids.shape == (0, 10) and hits.scores.shape == (0, 10)
    assert run(GAUSS[:1], GAUSS[:1], 3, exclude=np.zeros((1, 1), np.int64)).ids.shape == (1, 0)


def test_column_penalty_is_subtracted_before_ranking():
    penalty = RNG.uniform(0, 1, len(GAUSS)).astype(np.float32)
    hits = run(GAUSS[:30], GAUSS, 8, 20_000, column_penalty=penalty)
    assert_matches(hits, brute_force(GAUSS[:30], GAUSS, 8, penalty=penalty))


def test_float16_and_read_only_tables_are_accepted():
    db = GAUSS.astype(np.float16)
    db.setflags(write=False)
    hits = run(db[:5], db, 4)
    assert_matches(hits, brute_force(db[:5], db, 4), atol=1e-5)
    assert not db.flags.writeable and np.array_equal(db, GAUSS.astype(np.float16))


def test_caller_table_is_never_modified():
    db = GAUSS.copy()
    run(db, db, 5, 6_000)
    np.testing.assert_array_equal(db, GAUSS)


@pytest.mark.parametrize("budget", [2_000, 50_000, 2**20, 256 * 2**20, 2**33])
@pytest.mark.parametrize(("n_q", "n_db", "dim"), [(100_000, 100_000, 300), (7, 400_000, 4096),
                                                  (150_000, 150_000, 4096), (3, 5, 2)])
def test_planned_tiles_fit_the_budget(n_q, n_db, dim, budget):
    if budget < TilePlan(1, 1, dim, 10, 4).nbytes:
        with pytest.raises(SimilarityError, match=f"memory budget of {budget} bytes is too small"):
            plan_tiles(n_q, n_db, dim, 10, memory_budget=budget)
        return
    plan = plan_tiles(n_q, n_db, dim, 10, memory_budget=budget)
    assert plan.nbytes <= budget
    assert 1 <= plan.query_rows <= n_q and 1 <= plan.database_rows <= n_db
    # and not needlessly small: one more row of either kind would not fit (or none is left)
    bigger_q = TilePlan(plan.query_rows + 1, plan.database_rows, dim, 10, 4)
    assert plan.query_rows == n_q or bigger_q.nbytes > budget


def test_full_width_tiles_when_the_database_fits():
    plan = plan_tiles(100_000, 100_000, 300, 10)
    assert plan.database_rows == 100_000 and plan.query_rows >= 256


def test_search_uses_the_planned_tiles(cpu_path):
    if cpu_path != "float32":
        pytest.skip("the candidate pass plans for its own k and dtype")
    hits = run(GAUSS, GAUSS, 10, 60_000)
    assert hits.plan == plan_tiles(300, 300, 16, 10, memory_budget=60_000)
    assert hits.plan.nbytes <= 60_000 and hits.plan.database_rows < 300


def test_errors_name_the_problem():
    with pytest.raises(SimilarityError, match="dimensions must agree"):
        run(GAUSS[:, :4], GAUSS, 3)
    with pytest.raises(SimilarityError, match="k must be at least 1, got 0"):
        run(GAUSS, GAUSS, 0)
    with pytest.raises(DtypeError, match="precision float16 needs a CUDA device"):
        run(GAUSS, GAUSS, 3, precision="float16")
    with pytest.raises(SimilarityError, match="exclude has 2 rows for 300 queries"):
        run(GAUSS, GAUSS, 3, exclude=np.zeros((2, 1), np.int64))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_a_device_says_what_to_do():
    assert resolve_device("auto") == "cpu"
    with pytest.raises(SimilarityError, match=r"torch sees no CUDA device.*use --device cpu"):
        search(GAUSS, GAUSS, 3, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("budget", [None, 60_000])
def test_gpu_equals_cpu(budget):
    kw = {} if budget is None else {"memory_budget": budget}
    cpu = search(INTS, INTS, 7, metric="dot", device="cpu", **kw)
    gpu = search(INTS, INTS, 7, metric="dot", device="cuda", **kw)
    np.testing.assert_array_equal(gpu.ids, cpu.ids)
    np.testing.assert_array_equal(gpu.scores, cpu.scores)
    cpu = search(GAUSS, GAUSS, 10, device="cpu", **kw)
    gpu = search(GAUSS, GAUSS, 10, device="cuda", **kw)
    np.testing.assert_allclose(gpu.scores, cpu.scores, atol=1e-5)
    assert (gpu.ids == cpu.ids).mean() > 0.99


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_gpu_half_precision_is_close(precision):
    ref = brute_force(GAUSS, GAUSS, 10)
    hits = search(GAUSS, GAUSS, 10, device="cuda", precision=precision)
    np.testing.assert_allclose(hits.scores, ref.scores, atol=2e-2)
    assert (hits.ids == ref.ids).mean() > 0.8


@pytest.mark.parametrize("budget", [None, 60_000])
def test_device_resident_queries_give_the_same_result(monkeypatch, budget):
    # The CUDA path that keeps all prepared queries on the device, exercised on the CPU.
    streamed = run(INTS, INTS, 7, budget, metric="dot", exclude=np.arange(400)[:, None])
    monkeypatch.setattr("embsurgeon.similarity.knn._queries_resident", lambda *a: True)
    resident = run(INTS, INTS, 7, budget, metric="dot", exclude=np.arange(400)[:, None])
    np.testing.assert_array_equal(resident.ids, streamed.ids)
    np.testing.assert_array_equal(resident.scores, streamed.scores)


def test_certified_path_recomputes_exactly_the_uncertain_queries(cpu_path, monkeypatch):
    if cpu_path == "float32":
        pytest.skip("about the bfloat16 candidate pass")
    calls = []
    real = knn._search_tiles

    def spy(queries, *args, **kwargs):
        calls.append((len(queries), args[6]))  # the precision
        return real(queries, *args, **kwargs)

    monkeypatch.setattr(knn, "_search_tiles", spy)
    # Random rows: the top 3 stand far above the 64th candidate, so the bfloat16 pass alone
    # certifies every query.
    own = np.arange(300)[:, None]
    hits = run(GAUSS, GAUSS, 3, exclude=own)
    assert calls == [(300, knn.Precision.BFLOAT16)]
    assert_matches(hits, brute_force(GAUSS, GAUSS, 3, exclude=own))
    # More exact ties at the k-th place than candidates cannot be certified: recomputed.
    calls.clear()
    db = np.repeat(np.eye(3, dtype=np.float32), 80, axis=0)
    hits = run(db[[0, 100]], db, 5)
    assert calls == [(2, knn.Precision.BFLOAT16), (2, knn.Precision.FLOAT32)]
    assert hits.ids.tolist() == [[0, 1, 2, 3, 4], [80, 81, 82, 83, 84]]
    # Ties that all fit among the candidates are certified and keep the id order.
    calls.clear()
    db = np.repeat(np.eye(3, dtype=np.float32), 40, axis=0)
    assert run(db[[50]], db, 5).ids.tolist() == [[40, 41, 42, 43, 44]]
    assert calls == [(1, knn.Precision.BFLOAT16)]


def test_bfloat16_error_bound_holds():
    rng = np.random.default_rng(0)
    for dim in (8, 300, 4096):
        x = torch.nn.functional.normalize(torch.from_numpy(
            rng.standard_normal((64, dim)).astype(np.float32)), dim=1)
        exact = x @ x.T
        rough = (x.bfloat16() @ x.bfloat16().T).float()
        assert (rough - exact).abs().max().item() < knn._bf16_cosine_error(dim) / 2
