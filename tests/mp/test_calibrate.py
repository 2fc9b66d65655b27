"""mp.calibrate on a 2-block model: the coordinate descent walked by hand (explicit
loops over candidates, the block computed with sc_matmul calls) finds the plan's
boundaries, with and without a cycle budget; QwT compensation lowers each block's
residual and simulate(plan=...) applies it; the plan is deterministic; all
candidates in one program equal a Python loop over them."""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from scmp_jax import mp, sc_matmul
from scmp_jax.flax import SC, Rule, simulate
from tests.helpers import TwoBlockNet as Net, assert_same_bits

PREC, L2 = 5, 16
LEVELS = (32, 16, 4)
CFG = mp.FreeBoundaryMPConfig(LEVELS)
BLOCKS = r"layer_(\d+)"
RULES = [Rule(r"layer_\d+/fc1", SC(mp=CFG, sc_prec=PREC)),
         Rule(r"layer_\d+/fc2", SC(sc_prec=PREC, stoc_len=L2))]


X0 = jax.random.normal(jax.random.key(0), (3, 8, 6))
VARS = Net().init(jax.random.key(1), X0)


@jax.jit
def fc1_mixed(x2, w, lengths):
    return sc_matmul(x2, w.T, row_stoc_len=lengths, stoc_levels=LEVELS, sc_prec=PREC)


def block_sc(p, x, lengths):
    """The block with fc1 at per-row lengths and fc2 at L2, written out."""
    h = nn.relu(fc1_mixed(x.reshape(-1, 6), p["fc1"]["kernel"], lengths).reshape(3, 8, 8)
                + p["fc1"]["bias"])
    y = sc_matmul(h.reshape(-1, 8), p["fc2"]["kernel"].T, sc_prec=PREC, stoc_len=L2)
    return x + (y.reshape(3, 8, 6) + p["fc2"]["bias"])


def block_fp(p, x):
    x = np.asarray(x, np.float64)
    h = np.maximum(x @ np.asarray(p["fc1"]["kernel"], np.float64) + np.asarray(p["fc1"]["bias"]), 0)
    return x + h @ np.asarray(p["fc2"]["kernel"], np.float64) + np.asarray(p["fc2"]["bias"])


def lengths_of(x, bounds):
    """Free-boundary rule (SPEC 7.5) on max |row|, written with NumPy float32."""
    m = np.abs(np.asarray(x, np.float32)).reshape(-1, 6).max(1)
    lo, hi = m.min(), m.max()
    norm = (m - lo) / np.float32(hi - lo)
    b = np.sort(np.asarray(bounds, np.float32))[::-1]
    level = np.zeros(m.shape, np.int64)
    for k, bk in enumerate(b):
        level = np.where(norm < bk, k + 1, level)
    return np.asarray(LEVELS, np.int32)[level]


def ridge_residual(X, R, ridge=1e-2):
    X = np.asarray(X, np.float64).reshape(-1, 6)
    Xa = np.concatenate([X, np.ones((len(X), 1))], 1)
    G = Xa.T @ Xa + np.diag([ridge] * 6 + [0.0])
    sol = np.linalg.solve(G, Xa.T @ R)
    return R - Xa @ sol, sol


def hand_walk(plan, objective, ratio, n=10, eps=1e-3):
    """Gauss-Seidel over the two blocks, coordinate descent over fc1's two
    boundaries (2 block rounds x 2 op rounds), each candidate evaluated by
    calling the block; the next block's input is the plan's compensated output.
    Returns per block (boundaries, lengths, cycles used, baseline, rmse of Y_fp - Y_sc)."""
    params = VARS["params"]
    x, out, base_sum, used_sum = X0, [], 0, 0
    for i in range(2):
        p = params[f"layer_{i}"]
        yfp = block_fp(p, x)

        def trial(bounds):
            lengths = lengths_of(x, bounds)
            R = (yfp - np.asarray(block_sc(p, x, lengths), np.float64)).reshape(-1, 6)
            score = np.mean(R * R) if objective == "mse" else np.sum(ridge_residual(x, R)[0] ** 2)
            return score, 6 * 8 * int(lengths.sum())

        baseline = x.size // 6 * 8 * 6 * 32
        target = None
        if ratio is not None:
            target = min(max(ratio * baseline + ratio * base_sum - used_sum, 0.0), baseline)

        def key(t):           # feasible first, then score (then cycles), else overrun
            score, used = t
            if target is None:
                return (0, score, 0)
            return (0, score, used) if used <= target + 1e-9 else (1, used - target, score)

        def better(a, b):
            ka, kb = key(a), key(b)
            if ka[0] != kb[0]:
                return ka[0] < kb[0]
            for u, v in zip(ka[1:], kb[1:]):
                if abs(u - v) > 1e-9:
                    return u < v
            return False

        b = [np.float32(v) for v in (2 / 3, 1 / 3)]
        best = trial(b)
        for _ in range(2):                                  # block rounds (one op)
            for _ in range(2):                              # op rounds
                changed = False
                for j in range(2):
                    lo = float(b[j + 1]) + eps if j == 0 else eps
                    hi = 1 - eps if j == 0 else float(b[j - 1]) - eps
                    cands = np.linspace(lo, hi, n).astype(np.float32) if hi > lo else [b[j]]
                    pick, pick_t = b[j], best
                    for c in cands:
                        t = trial([c if k == j else b[k] for k in range(2)])
                        if better(t, pick_t):
                            pick, pick_t = c, t
                    if pick != b[j] or better(pick_t, best):
                        b[j], best, changed = pick, pick_t, True
                if not changed:
                    break
        lengths = lengths_of(x, b)
        ysc = block_sc(p, x, lengths)
        rmse = float(np.sqrt(np.mean((yfp - np.asarray(ysc, np.float64)) ** 2)))
        out.append((tuple(float(v) for v in b), lengths, best[1], baseline, rmse, x, ysc, yfp))
        base_sum, used_sum = base_sum + baseline, used_sum + best[1]
        comp = plan.compensation_for(i)
        x = ysc if comp is None else mp.apply_compensation(ysc, x, *comp)
    return out


@pytest.fixture(scope="module")
def plan():
    return mp.calibrate(Net(), VARS, X0, RULES, block_path=BLOCKS)


@pytest.fixture(scope="module")
def budget_plans():
    kw = dict(block_path=BLOCKS, budget_ratio=0.45, objective="mse", compensate=False)
    return [mp.calibrate(Net(), VARS, (X0,), RULES, **kw) for _ in range(2)]


def check_walk(plan, walk):
    for i, (bounds, lengths, used, baseline, rmse, *_) in enumerate(walk):
        assert plan.boundaries[(i, "fc1")] == bounds
        rep = plan.report[i]
        assert rep.operators == ("fc1",) and dict(rep.boundaries) == {"fc1": bounds}
        assert (rep.budget_actual, rep.budget_baseline) == (used, baseline)
        np.testing.assert_allclose(rep.rmse_search, rmse, rtol=1e-5)


def test_coordinate_descent_by_hand_qwt(plan):
    walk = hand_walk(plan, "qwt", None)
    check_walk(plan, walk)
    assert any(w[0] != (np.float32(2 / 3), np.float32(1 / 3)) for w in walk)   # it moved


def test_coordinate_descent_by_hand_budget_mse(budget_plans):
    p = budget_plans[0]
    walk = hand_walk(p, "mse", 0.45)
    check_walk(p, walk)
    assert not p.compensation and all(not r.compensated for r in p.report)
    total = sum(w[2] for w in walk)
    assert total <= 0.45 * sum(w[3] for w in walk) + 1e-9          # the budget holds here
    t0 = 0.45 * walk[0][3]
    assert p.report[0].budget_target == pytest.approx(t0)
    assert p.report[1].budget_target == pytest.approx(
        min(0.45 * walk[1][3] + 0.45 * walk[0][3] - walk[0][2], walk[1][3]))


def test_qwt_reduces_each_block_residual_and_simulate_applies_it(plan):
    walk = hand_walk(plan, "qwt", None)
    for i, (*_, x, ysc, yfp) in enumerate(walk):
        R = (yfp - np.asarray(ysc, np.float64)).reshape(-1, 6)
        kernel, bias = plan.compensation_for(i)
        after = R - (np.asarray(x, np.float64).reshape(-1, 6) @ kernel + bias)
        assert np.mean(after ** 2) < np.mean(R ** 2)
        rep = plan.report[i]
        assert rep.compensated and rep.r2 > 0 and rep.rmse_after < rep.rmse_search
        res, sol = ridge_residual(x, R)
        r2 = 1 - np.sum(res ** 2) / np.sum((R - R.mean(0)) ** 2)
        np.testing.assert_allclose(rep.r2, r2, rtol=1e-6)
        np.testing.assert_allclose(kernel, sol[:-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rep.rmse_after, np.sqrt(np.mean(after ** 2)), rtol=1e-5)
    sim = simulate(Net(), RULES, plan=plan)
    out = jax.jit(sim.apply)(VARS, X0)
    last = walk[-1]
    want = mp.apply_compensation(last[6], last[5], *plan.compensation_for(1))
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    hist = [r.histogram for r in sim.report.mp]
    assert [list(h.values()) for h in hist] == [np.bincount(
        np.searchsorted(-np.asarray(LEVELS), -w[1]), minlength=3).tolist() for w in walk]
    assert set(plan.variables) == {mp.COLLECTION}


def test_plan_is_deterministic(budget_plans):
    a, b = budget_plans
    assert dict(a.boundaries) == dict(b.boundaries)
    for ra, rb in zip(a.report, b.report):
        fields = [f for f in ra.__dataclass_fields__ if f != "seconds"]
        assert [getattr(ra, f) for f in fields] == [getattr(rb, f) for f in fields]


def test_one_program_equals_loop_over_candidates():
    """Block 0's candidates of boundary 0 in one lax.map program == one call each:
    the block outputs and level counts bit for bit; the objective (a float32
    reduction whose order XLA picks per program) to 1e-6."""
    sim = simulate(Net(), RULES, block_path=BLOCKS)
    prog = mp.BlockProgram(sim, VARS, (X0,), {}, 0, X0, ops=["fc1"], total_blocks=2)
    states = [{"fc1": (float(c), float(np.float32(1 / 3)))}
              for c in np.linspace(1 / 3 + 1e-3, 1 - 1e-3, 10).astype(np.float32)]
    many = prog.evaluate(states, outputs=True)
    scores = [s for s, _ in prog.evaluate(states)]
    for s, (score, counts, y), score0 in zip(states, many, scores):
        y1, score1, counts1 = prog.run(s)
        assert_same_bits(y, y1)
        assert [c.tolist() for c in counts] == [c.tolist() for c in counts1]
        np.testing.assert_allclose([score, score0], score1, rtol=1e-6)
        lengths = lengths_of(X0, s["fc1"])
        assert_same_bits(y1, block_sc(VARS["params"]["layer_0"], X0, lengths))
        assert counts[0].tolist() == [int((lengths == L).sum()) for L in LEVELS]
    assert len(set(scores)) > 1                                   # the candidates differ


def test_calibrate_arguments_are_validated():
    kw = dict(block_path=BLOCKS)
    with pytest.raises(TypeError, match="model"):
        mp.calibrate(object(), VARS, X0, RULES, **kw)
    with pytest.raises(TypeError, match="rules"):
        mp.calibrate(Net(), VARS, X0, ["fc1"], **kw)
    with pytest.raises(ValueError, match="budget_ratio"):
        mp.calibrate(Net(), VARS, X0, RULES, budget_ratio=-0.1, **kw)
    with pytest.raises(TypeError, match="budget_ratio"):
        mp.calibrate(Net(), VARS, X0, RULES, budget_ratio="half", **kw)
    with pytest.raises(ValueError, match="objective"):
        mp.calibrate(Net(), VARS, X0, RULES, objective="l1", **kw)
    with pytest.raises(TypeError, match="compensate"):
        mp.calibrate(Net(), VARS, X0, RULES, compensate="yes", **kw)
    with pytest.raises(ValueError, match="n_candidates"):
        mp.calibrate(Net(), VARS, X0, RULES, n_candidates=0, **kw)
    with pytest.raises(ValueError, match="block_path"):
        mp.calibrate(Net(), VARS, X0, RULES, block_path=r"layer_\d+")
    with pytest.raises(ValueError, match="matches no module"):
        mp.calibrate(Net(), VARS, X0, RULES, block_path=r"block_(\d+)")
