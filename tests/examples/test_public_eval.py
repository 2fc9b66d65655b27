"""``public_eval``: Spearman's rho, cosines, folds and the ridge probe against
independent computations (rank and correlation formulas by hand, least squares
on the augmented system, separable synthetic data)."""
import itertools

import numpy as np
import pytest

from scmp_jax_examples import public_eval as pe


def brute_ranks(x):
    """Rank of each value: 1 + the number below it + half the others equal to it."""
    x = list(x)
    return np.array([1 + sum(y < v for y in x) + (sum(y == v for y in x) - 1) / 2 for v in x])


@pytest.mark.parametrize("seed", range(5))
def test_ranks_and_spearman_match_the_formulas(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, 12).astype(float)          # ties
    y = rng.integers(0, 6, 12).astype(float)
    assert (pe.average_ranks(x) == brute_ranks(x)).all()
    rx, ry = brute_ranks(x), brute_ranks(y)
    pearson = np.sum((rx - rx.mean()) * (ry - ry.mean())) / np.sqrt(
        np.sum((rx - rx.mean()) ** 2) * np.sum((ry - ry.mean()) ** 2))
    assert pe.spearman(x, y) == pytest.approx(pearson, abs=1e-12)
    # without ties: 1 - 6 sum d^2 / (n (n^2 - 1))
    a, b = rng.permutation(10).astype(float), rng.standard_normal(10)
    d = brute_ranks(a) - brute_ranks(b)
    assert pe.spearman(a, b) == pytest.approx(1 - 6 * np.sum(d * d) / (10 * 99), abs=1e-12)


def test_spearman_edge_cases():
    assert pe.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert pe.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(pe.spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        pe.spearman([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        pe.spearman([1], [1])
    with pytest.raises(ValueError, match="NaN"):
        pe.spearman([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="x must be 1-D"):
        pe.spearman(np.zeros((2, 2)), [1, 2])


def test_pair_cosines():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    want = [float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)) for u, v in zip(a, b)]
    assert pe.pair_cosines(a, b) == pytest.approx(want, abs=1e-12)
    assert pe.pair_cosines(np.zeros((1, 3)), np.ones((1, 3)))[0] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        pe.pair_cosines(a, b[:4])


def test_stratified_folds():
    y = np.array([0, 0, 0, 1, 1, 0, 1, 1, 0, 1])
    f = pe.stratified_folds(y, 2)
    assert f.tolist() == [0, 1, 0, 0, 1, 1, 0, 1, 0, 0]
    for k in (2, 3, 4, 5):
        f = pe.stratified_folds(y, k)
        for c in (0, 1):
            sizes = np.bincount(f[y == c], minlength=k)
            assert sizes.max() - sizes.min() <= 1
    with pytest.raises(ValueError, match="k=6 folds"):
        pe.stratified_folds(y, 6)
    for bad in (1, 2.0, True):
        with pytest.raises(ValueError, match="k must be"):
            pe.stratified_folds(y, bad)
    with pytest.raises(ValueError, match="labels"):
        pe.stratified_folds(np.array([0, 2]), 2)


def test_ridge_probe_is_the_regularised_least_squares_solution():
    rng = np.random.default_rng(2)
    X, y, ridge = rng.standard_normal((30, 4)), rng.integers(0, 2, 30), 0.7
    w, b = pe.fit_ridge_probe(X, y, ridge)
    # the same problem as plain least squares: rows sqrt(ridge) * I penalise w, not b
    A = np.block([[X, np.ones((30, 1))], [np.sqrt(ridge) * np.eye(4), np.zeros((4, 1))]])
    sol = np.linalg.lstsq(A, np.r_[2.0 * y - 1.0, np.zeros(4)], rcond=None)[0]
    assert np.allclose(w, sol[:4], atol=1e-10) and b == pytest.approx(sol[4], abs=1e-10)
    assert (pe.probe_predict(X, w, b) == (X @ sol[:4] + sol[4] > 0)).all()
    with pytest.raises(ValueError, match="ridge"):
        pe.fit_ridge_probe(X, y, 0.0)
    with pytest.raises(ValueError, match="rows"):
        pe.fit_ridge_probe(X[:5], y, 1.0)


def test_probe_accuracy_on_separable_data():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 20)
    ref = rng.standard_normal((40, 6)) * 0.1
    ref[:, 0] += np.where(y == 1, 3.0, -3.0)                 # separable along axis 0
    flipped = ref.copy()
    flipped[:, 0] *= -1
    res = pe.probe_accuracy(ref, y, {"float32": ref, "noisy": ref + 0.01, "flipped": flipped},
                            k=4, ridge=1.0)
    assert res["float32"] == {"accuracy": 1.0, "agreement": 1.0}
    assert res["noisy"] == {"accuracy": 1.0, "agreement": 1.0}
    assert res["flipped"] == {"accuracy": 0.0, "agreement": 0.0}


def test_probe_accuracy_is_the_cross_validated_accuracy():
    rng = np.random.default_rng(4)
    y = rng.permutation(np.repeat([0, 1], 15))
    ref = rng.standard_normal((30, 5)) + y[:, None] * 0.8
    other = ref + rng.standard_normal((30, 5)) * 0.5
    res = pe.probe_accuracy(ref, y, {"other": other, "ref": ref}, k=3, ridge=2.0)
    folds = pe.stratified_folds(y, 3)
    hits = {"other": 0, "ref": 0}
    same = 0
    for f, i in itertools.product(range(3), range(30)):
        if folds[i] != f:
            continue
        w, b = pe.fit_ridge_probe(ref[folds != f], y[folds != f], 2.0)
        p_ref, p_other = int(ref[i] @ w + b > 0), int(other[i] @ w + b > 0)
        hits["ref"] += p_ref == y[i]
        hits["other"] += p_other == y[i]
        same += p_ref == p_other
    assert res["ref"]["accuracy"] == hits["ref"] / 30
    assert res["other"]["accuracy"] == hits["other"] / 30
    assert res["other"]["agreement"] == same / 30
    with pytest.raises(ValueError, match=r"embeddings\['x'\]"):
        pe.probe_accuracy(ref, y, {"x": other[:, :3]}, k=3)
