"""How far simulated arithmetic moves MiniLM's sentence embeddings from float32.

Metrics (NumPy only, computed in float64):

* ``cosine_to_reference(emb, ref)``: per-sentence cosine between an
  embedding and its float32 reference;
* ``nearest_neighbours(emb)``: each sentence's most similar other sentence;
* ``retrieval_agreement(emb, ref)``: fraction of sentences whose top-1
  nearest neighbour is the same as under the reference;
* ``paraphrase_accuracy(emb, pairs)``: fraction of paraphrase-pair members
  whose nearest neighbour is their partner.

``evaluate(arith_configs, sentences, run_embed=...)`` runs each arithmetic
configuration through ``run_embed(sentences, rules)`` and reports these
metrics against the float32 run (``rules=None``). The default is this
module's ``run_embed``: ``rules=None`` is the plain float32 ``minilm.embed``,
otherwise the model is wrapped by ``scmp_jax.flax.simulate(model, rules)``
(a list of ``Rule``) and jitted like the float32 one.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["cosine_to_reference", "nearest_neighbours", "retrieval_agreement",
           "paraphrase_accuracy", "run_embed", "evaluate"]


def _rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (n, dim) embeddings, got shape {x.shape}")
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-300)


def cosine_to_reference(emb, ref) -> np.ndarray:
    """Cosine similarity of row ``i`` of ``emb`` with row ``i`` of ``ref``: shape ``(n,)``.

    A zero row has cosine 0 with anything; a non-finite row gives NaN.
    """
    e, r = _rows(emb), _rows(ref)
    if e.shape != r.shape:
        raise ValueError(f"shape mismatch {e.shape} vs {r.shape}")
    return np.sum(_unit(e) * _unit(r), axis=1)


def nearest_neighbours(emb) -> np.ndarray:
    """Index of each row's most cosine-similar *other* row (ties: lowest index)."""
    u = _unit(_rows(emb))
    if u.shape[0] < 2:
        raise ValueError("nearest neighbours need at least 2 sentences")
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    sim = np.where(np.isnan(sim), -np.inf, sim)
    return np.argmax(sim, axis=1)


def retrieval_agreement(emb, ref) -> float:
    """Fraction of rows whose top-1 nearest neighbour in ``emb`` equals that in ``ref``."""
    a, b = nearest_neighbours(emb), nearest_neighbours(ref)
    if a.shape != b.shape:
        raise ValueError("emb and ref hold different numbers of sentences")
    return float(np.mean(a == b))


def paraphrase_accuracy(emb, pairs: Sequence[tuple[int, int]]) -> float:
    """Fraction of pair members ``i`` (of pairs ``(i, j)``) whose nearest neighbour is the partner."""
    nn_ = nearest_neighbours(emb)
    hits = [nn_[i] == j for i, j in pairs] + [nn_[j] == i for i, j in pairs]
    return float(np.mean(hits)) if hits else float("nan")


def run_embed(sentences: Sequence[str], rules=None, *, loaded=None,
              batch_size: int = 64) -> np.ndarray:
    """MiniLM embeddings ``(len(sentences), 384)`` float32 under ``rules``.

    ``rules=None``: the unmodified float32 model (``minilm.embed``). Otherwise
    a list or tuple of ``scmp_jax.flax.Rule`` (else TypeError, raised before
    anything is loaded): the model runs as
    ``simulate(model, rules)`` (matched matmuls in SC / fp4 arithmetic, the
    rest exact), jitted per call of this function (one compile per call).
    ``loaded``: ``(model, params, tokenizer)`` from ``minilm.load()``; default
    the process-wide one ``minilm.embed`` uses.
    """
    if rules is not None:                 # checked before the model is loaded
        from scmp_jax.flax import Rule

        if isinstance(rules, Rule) or not isinstance(rules, (list, tuple)) or not all(
                isinstance(r, Rule) for r in rules):
            raise TypeError(f"rules must be None or a list of scmp_jax.flax.Rule, "
                            f"got {rules!r}")
    from scmp_jax_examples import minilm

    model, params, tokenizer = minilm._default() if loaded is None else loaded
    if rules is not None:
        from scmp_jax.flax import simulate

        model = simulate(model, list(rules))
    return minilm.embed(list(sentences), params, model, tokenizer=tokenizer,
                        batch_size=batch_size)


_run_embed = run_embed          # evaluate()'s default (its argument shadows the name)


def evaluate(arith_configs: Mapping[str, object], sentences: Sequence[str] | None = None, *,
             run_embed: Callable[[Sequence[str], object], np.ndarray] | None = None,
             reference: np.ndarray | None = None,
             pairs: Sequence[tuple[int, int]] | None = None) -> dict[str, dict[str, float]]:
    """Metrics of each arithmetic configuration against float32.

    ``arith_configs`` maps a name to the ``rules`` passed to
    ``run_embed(sentences, rules)``; ``reference`` defaults to
    ``run_embed(sentences, None)`` (float32). ``sentences`` defaults to the
    built-in set, whose paraphrase pairs are then scored too (``pairs``).

    Returns ``{name: {"cosine_mean", "cosine_min", "retrieval_agreement",
    "paraphrase_accuracy"}}`` (the last only when pairs are known).
    """
    if sentences is None:
        from scmp_jax_examples.sentences import PARAPHRASE_PAIRS, SENTENCES

        sentences = SENTENCES
        pairs = PARAPHRASE_PAIRS if pairs is None else pairs
    run_embed = _run_embed if run_embed is None else run_embed
    ref = run_embed(sentences, None) if reference is None else reference
    report = {}
    for name, rules in arith_configs.items():
        emb = run_embed(sentences, rules)
        cos = cosine_to_reference(emb, ref)
        row = {"cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos)),
               "retrieval_agreement": retrieval_agreement(emb, ref)}
        if pairs:
            row["paraphrase_accuracy"] = paraphrase_accuracy(emb, pairs)
        report[name] = row
    return report
