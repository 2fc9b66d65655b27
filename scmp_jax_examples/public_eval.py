"""Metrics on the public human-rated data (NumPy only, float64).

* ``spearman(x, y)``: Spearman's rank correlation (Pearson correlation of the
  average ranks, so ties get the mean of the ranks they span);
* ``pair_cosines(a, b)``: cosine of row ``i`` of ``a`` with row ``i`` of ``b``;
* ``stratified_folds(labels, k)``: fixed cross-validation folds: within each
  class, the ``j``-th sample in input order goes to fold ``j % k``;
* ``fit_ridge_probe`` / ``probe_predict``: a closed-form ridge classifier on
  ``+1 / -1`` targets with an unpenalised bias;
* ``probe_accuracy(reference, labels, embeddings)``: per fold, the probe is
  fit on the reference (float32) embeddings of the other folds and applied to
  each configuration's embeddings of the held-out fold.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["average_ranks", "spearman", "pair_cosines", "stratified_folds",
           "fit_ridge_probe", "probe_predict", "probe_accuracy"]


def _vector(x, name: str) -> np.ndarray:
    v = np.asarray(x, np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
    return v


def _matrix(x, name: str) -> np.ndarray:
    m = np.asarray(x, np.float64)
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, dim), got shape {m.shape}")
    return m


def average_ranks(x) -> np.ndarray:
    """Ranks 1..n of ``x`` (float64), ties sharing the mean of their ranks."""
    v = _vector(x, "x")
    if np.isnan(v).any():
        raise ValueError("x must not contain NaN")
    order = np.argsort(v, kind="stable")
    s = v[order]
    # start of each run of equal values, and its length
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    lengths = np.diff(np.r_[starts, len(s)])
    mean_rank = starts + (lengths + 1) / 2.0
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(mean_rank, lengths)
    return ranks


def spearman(x, y) -> float:
    """Spearman's rho of two equal-length vectors (NaN when either is constant)."""
    a, b = _vector(x, "x"), _vector(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("spearman needs at least 2 values")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / den) if den > 0 else float("nan")


def pair_cosines(a, b) -> np.ndarray:
    """Cosine of row ``i`` of ``a`` with row ``i`` of ``b`` (a zero row gives 0)."""
    x, y = _matrix(a, "a"), _matrix(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    nx = np.maximum(np.linalg.norm(x, axis=1), 1e-300)
    ny = np.maximum(np.linalg.norm(y, axis=1), 1e-300)
    return np.sum(x * y, axis=1) / (nx * ny)


def _labels(labels) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise ValueError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if set(np.unique(y).tolist()) - {0, 1}:
        raise ValueError("labels must be 0 or 1")
    return y.astype(np.int64)


def stratified_folds(labels, k: int) -> np.ndarray:
    """Fold index (int64) per sample: the ``j``-th sample of each class, in
    input order, goes to fold ``j % k``; every class needs at least ``k`` samples."""
    y = _labels(labels)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an int >= 2, got {k!r}")
    folds = np.empty(len(y), np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < k:
            raise ValueError(f"k={k} folds need at least {k} samples of class {c}, "
                             f"got {len(idx)}")
        folds[idx] = np.arange(len(idx)) % k
    return folds


def fit_ridge_probe(x, labels, ridge: float = 1.0) -> tuple:
    """``(w, b)`` minimising ``||X w + b - t||^2 + ridge ||w||^2`` with
    ``t = 2 * label - 1`` (closed form, float64)."""
    X, y = _matrix(x, "x"), _labels(labels)
    if len(X) != len(y):
        raise ValueError(f"x has {len(X)} rows but labels has {len(y)}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge > 0:
        raise ValueError(f"ridge must be a number > 0, got {ridge!r}")
    Xa = np.concatenate([X, np.ones((len(X), 1))], axis=1)
    G = Xa.T @ Xa
    G[np.arange(X.shape[1]), np.arange(X.shape[1])] += ridge
    sol = np.linalg.solve(G, Xa.T @ (2.0 * y - 1.0))
    return sol[:-1], float(sol[-1])


def probe_predict(x, w, b) -> np.ndarray:
    """Predicted labels (int64): 1 where ``x @ w + b > 0``."""
    return (_matrix(x, "x") @ np.asarray(w, np.float64) + b > 0).astype(np.int64)


def probe_accuracy(reference, labels, embeddings: Mapping[str, object], *, k: int = 10,
                   ridge: float = 1.0) -> dict:
    """Cross-validated probe: per fold (``stratified_folds``), fit on the
    ``reference`` rows of the other folds, predict the fold's rows of every
    entry of ``embeddings``. Returns ``{name: {"accuracy", "agreement"}}``
    (``agreement``: share of predictions equal to those on ``reference``)."""
    ref = _matrix(reference, "reference")
    y = _labels(labels)
    if len(ref) != len(y):
        raise ValueError(f"reference has {len(ref)} rows but labels has {len(y)}")
    embs = {name: _matrix(e, f"embeddings[{name!r}]") for name, e in embeddings.items()}
    for name, e in embs.items():
        if e.shape != ref.shape:
            raise ValueError(f"embeddings[{name!r}] has shape {e.shape}, reference {ref.shape}")
    folds = stratified_folds(y, k)
    pred = {name: np.empty(len(y), np.int64) for name in embs}
    pred_ref = np.empty(len(y), np.int64)
    for f in range(k):
        test = folds == f
        w, b = fit_ridge_probe(ref[~test], y[~test], ridge)
        pred_ref[test] = probe_predict(ref[test], w, b)
        for name, e in embs.items():
            pred[name][test] = probe_predict(e[test], w, b)
    return {name: {"accuracy": float(np.mean(p == y)),
                   "agreement": float(np.mean(p == pred_ref))} for name, p in pred.items()}
