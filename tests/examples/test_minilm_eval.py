"""Metrics of scmp_jax_examples.minilm_eval on synthetic embeddings (NumPy only)."""
import numpy as np
import pytest

from scmp_jax_examples.minilm_eval import (cosine_to_reference, evaluate, nearest_neighbours,
                                           paraphrase_accuracy, retrieval_agreement)


def _clusters(n_pairs=4, dim=16, spread=0.05, seed=0):
    """Pairs of nearby points around well-separated centres: rows 2i, 2i+1 are a pair."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:n_pairs]
    x = np.repeat(centres, 2, axis=0) + spread * rng.standard_normal((2 * n_pairs, dim))
    return x.astype(np.float32), [(2 * i, 2 * i + 1) for i in range(n_pairs)]


def test_cosine_identity_scale_and_sign():
    x, _ = _clusters()
    np.testing.assert_allclose(cosine_to_reference(x, x), 1.0, atol=1e-12)
    np.testing.assert_allclose(cosine_to_reference(3.0 * x, x), 1.0, atol=1e-12)
    np.testing.assert_allclose(cosine_to_reference(-x, x), -1.0, atol=1e-12)


def test_cosine_known_angle_and_zero_row():
    a = np.array([[1.0, 0.0], [0.0, 0.0]])
    b = np.array([[1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(cosine_to_reference(a, b), [np.sqrt(0.5), 0.0])


def test_cosine_shape_checks():
    with pytest.raises(ValueError):
        cosine_to_reference(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError):
        cosine_to_reference(np.ones(3), np.ones(3))


def test_nearest_neighbours_excludes_self():
    x, pairs = _clusters()
    nn = nearest_neighbours(x)
    for i, j in pairs:
        assert nn[i] == j and nn[j] == i
    assert (nn != np.arange(len(x))).all()


def test_nearest_neighbours_nan_rows_never_win():
    x, _ = _clusters()
    x[1] = np.nan
    nn = nearest_neighbours(x)
    assert (np.delete(nn, 1) != 1).all()


def test_retrieval_agreement_and_paraphrase_accuracy():
    x, pairs = _clusters()
    assert retrieval_agreement(x, x) == 1.0
    assert paraphrase_accuracy(x, pairs) == 1.0
    # swap the members of the first two pairs' second rows: 4 rows change neighbour
    y = x.copy()
    y[[1, 3]] = y[[3, 1]]
    assert retrieval_agreement(y, x) == pytest.approx(0.5)
    assert paraphrase_accuracy(y, pairs) == pytest.approx(0.5)


def test_retrieval_robust_to_small_noise():
    x, _ = _clusters(spread=0.05)
    noisy = x + 1e-4 * np.random.default_rng(1).standard_normal(x.shape)
    assert retrieval_agreement(noisy, x) == 1.0
    assert cosine_to_reference(noisy, x).min() > 0.999


def test_evaluate_with_custom_run_embed():
    x, pairs = _clusters()
    sentences = [f"s{i}" for i in range(len(x))]
    rng = np.random.default_rng(2)

    def run_embed(sents, rules):
        assert list(sents) == sentences
        return x if rules is None else x + rules * rng.standard_normal(x.shape)

    report = evaluate({"exact": 0.0, "noisy": 1e-3, "garbage": 10.0}, sentences,
                      run_embed=run_embed, pairs=pairs)
    assert report["exact"] == {"cosine_mean": pytest.approx(1.0), "cosine_min": pytest.approx(1.0),
                               "retrieval_agreement": 1.0, "paraphrase_accuracy": 1.0}
    assert report["noisy"]["retrieval_agreement"] == 1.0
    assert report["garbage"]["cosine_mean"] < 0.5


def test_evaluate_default_run_embed_refuses_rules():
    x, _ = _clusters()
    with pytest.raises(TypeError, match="Rule"):
        evaluate({"sc": object()}, [f"s{i}" for i in range(len(x))], reference=x)
