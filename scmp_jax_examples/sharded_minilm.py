"""MiniLM under simulated SC arithmetic, data-parallel over the available devices.

The sentence batch (token ids, attention mask, token types: ``(batch, tokens)``)
is sharded over a 1D mesh axis ``"batch"`` with a ``NamedSharding``; the
parameters are replicated. The model runs as ``scmp_jax.flax.simulate(model,
rules)`` inside one ``jax.jit``, so the shardings of the jitted inputs are
all XLA sees: XLA's partitioner splits the program, SC matmuls included
(``sc_matmul``'s own ``shard_map`` path is only taken for sharded arrays
passed *outside* ``jit``; the XLA implementation gives the same bits either
way). The embeddings come back sharded over ``"batch"``.

Why the bits equal the single-device run: with ``per_row`` (and
``per_head``) SC every token row has its own scale and the enable-signal
counts are per element, and LayerNorm, softmax and pooling reduce within one
sentence; so no arithmetic crosses the batch axis and the partitioned program
computes, on each device, what the one-device program computes for those
sentences. Padding sentences added to make the batch divisible by the device
count are dropped; they do not change the other rows for the same reason.

The reference is therefore the one-device run *in chunks of the per-device
batch* (``single_device_embed(..., chunk=len(batch) // n_devices)``). The
one-device run of the whole batch at once is a different XLA program, and
XLA CPU's code for float32 matmuls and for the final L2 norm's row reduction
depends on the batch size (measured on CPU, no devices involved: for
``x (16, 15, 384)``, ``(x @ W)[:4]`` differs from ``x[:4] @ W`` in the last
bit, and so does ``l2_normalize``'s ``(16, 384)`` vs ``(4, 384)``); so there the
final embeddings can differ by an ulp (about 1.5e-8) from the sharded ones.
The encoder's token states under SC on *every* matmul do not
(``method="token_states"``): SC counts are integers and its float steps are
elementwise or per row.

Inside ``jit`` the mesh must have ``Auto`` axes (``jax.sharding.Mesh``'s
default, used by ``batch_mesh``): with ``Explicit`` axes (the default of
``jax.make_mesh`` in jax 0.10) shardings enter the traced types and
``sc_matmul``'s quantizer (``jnp.repeat`` in ``quant/xla.py``) raises
``ValueError: Please pass sharding to jnp.repeat via out_sharding``.

Usage (4 host CPU devices)::

    python -m scmp_jax_examples.sharded_minilm --host-devices 4

or from Python::

    emb = sharded_embed(SENTENCES, rules)                        # sharded over "batch"
    ref = single_device_embed(SENTENCES, rules, chunk=len(SENTENCES) // len(jax.devices()))
    assert (np.asarray(emb).view(np.int32) == ref.view(np.int32)).all()
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

__all__ = ["AXIS", "default_rules", "batch_mesh", "shard_batch", "make_apply",
           "sharded_embed", "single_device_embed", "compare", "main"]

#: mesh axis the sentences are split over
AXIS = "batch"


def default_rules(stoc_len: int = 64):
    """SC per_row bipolar ``sc_prec=8`` on every encoder Dense matmul and SC per_head
    on the attention act x act einsums (``minilm_report``'s rules)."""
    from scmp_jax_examples.minilm_report import ATTENTION, sc_rule

    return [sc_rule(stoc_len=stoc_len), sc_rule(ATTENTION, "per_head", act_act=True,
                                                 stoc_len=stoc_len)]


def batch_mesh(devices=None):
    """A 1D ``jax.sharding.Mesh`` named ``("batch",)`` over ``devices`` (default all)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def shard_batch(batch: dict, mesh) -> tuple[dict, int]:
    """Pad a tokenized batch to a multiple of the mesh size (copies of the last
    sentence) and ``device_put`` each ``(batch, tokens)`` array with rows sharded
    over ``"batch"``. Returns ``(sharded batch, number of real sentences)``."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    n = len(next(iter(batch.values())))
    pad = -n % mesh.size
    spec = NamedSharding(mesh, P(AXIS, None))
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if pad:
            v = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)], axis=0)
        out[k] = jax.device_put(v, spec)
    return out, n


def make_apply(model, rules, method: str | None = None):
    """``jit(params, batch) -> embeddings`` of ``simulate(model, rules)`` (rules None:
    the float32 model); ``method="token_states"``: the encoder's last hidden
    states ``(batch, tokens, hidden)`` instead."""
    import jax

    if rules is not None:
        from scmp_jax.flax import simulate

        model = simulate(model, list(rules))
    kw = {} if method is None else {"method": method}
    return jax.jit(lambda params, batch: model.apply({"params": params}, **batch, **kw))


def sharded_embed(sentences: Sequence[str], rules=None, *, mesh=None, loaded=None, apply=None):
    """Embeddings of ``sentences`` with the batch sharded over ``mesh`` (default: all
    devices) and the parameters replicated; a ``jax.Array`` sharded over
    ``"batch"`` (padded rows sliced off, which keeps it sharded only when the
    batch divides evenly). ``apply``: a ``make_apply`` result to reuse."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    from scmp_jax_examples import minilm

    model, params, tok = minilm._default() if loaded is None else loaded
    mesh = batch_mesh() if mesh is None else mesh
    batch, n = shard_batch(minilm.tokenize(tok, list(sentences)), mesh)
    params = jax.device_put(params, NamedSharding(mesh, P()))
    apply = make_apply(model, rules) if apply is None else apply
    out = apply(params, batch)
    return out if out.shape[0] == n else out[:n]


def single_device_embed(sentences: Sequence[str], rules=None, *, chunk: int | None = None,
                        loaded=None, apply=None):
    """The same computation on one device (``jax.devices()[0]``), as NumPy.

    ``chunk``: sentences per call (default: all at once); with the per-device
    batch of a sharded run each call is the program each device runs there.
    The batch is tokenized (padded) as a whole first, as ``sharded_embed`` does."""
    import jax
    import numpy as np

    from scmp_jax_examples import minilm

    model, params, tok = minilm._default() if loaded is None else loaded
    dev = jax.devices()[0]
    batch = minilm.tokenize(tok, list(sentences))
    n = len(sentences)
    chunk = n if chunk is None else int(chunk)
    apply = make_apply(model, rules) if apply is None else apply
    params = jax.device_put(params, dev)
    outs = []
    for i in range(0, n, chunk):
        part = {k: np.asarray(v[i:i + chunk]) for k, v in batch.items()}
        if len(part["input_ids"]) < chunk:          # pad the last chunk like shard_batch
            pad = chunk - len(part["input_ids"])
            part = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in
                    part.items()}
        out = np.asarray(apply(params, jax.device_put(part, dev)))
        outs.append(out[:min(chunk, n - i)])
    return np.concatenate(outs, axis=0)


def compare(sentences: Sequence[str], rules, *, loaded=None, mesh=None) -> dict:
    """Sharded vs one-device runs of ``simulate(model, rules)``: a summary dict.

    ``same_bits``: sharded embeddings == one-device run in per-device chunks;
    ``token_states_same_bits_full_batch``: sharded token states == one-device
    run of the whole batch at once; ``max_abs_diff_full_batch``: embeddings vs
    that whole-batch run; plus the output sharding and per-device rows."""
    import numpy as np

    from scmp_jax_examples import minilm

    loaded = minilm._default() if loaded is None else loaded
    mesh = batch_mesh() if mesh is None else mesh
    bits = lambda x: np.asarray(x, np.float32).view(np.int32)  # noqa: E731
    apply = make_apply(loaded[0], rules)
    emb = sharded_embed(sentences, rules, mesh=mesh, loaded=loaded, apply=apply)
    per_dev = -(-len(sentences) // mesh.size)
    ref = single_device_embed(sentences, rules, chunk=per_dev, loaded=loaded, apply=apply)
    full = single_device_embed(sentences, rules, loaded=loaded, apply=apply)
    states = make_apply(loaded[0], rules, method="token_states")
    st_sh = sharded_embed(sentences, rules, mesh=mesh, loaded=loaded, apply=states)
    st_full = single_device_embed(sentences, rules, loaded=loaded, apply=states)
    return {"devices": mesh.size, "sharding": emb.sharding,
            "rows_per_device": [s.data.shape[0] for s in emb.addressable_shards],
            "embeddings": emb, "same_bits": bool((bits(emb) == bits(ref)).all()),
            "max_abs_diff_full_batch": float(np.max(np.abs(np.asarray(emb) - full))),
            "token_states_sharding": st_sh.sharding,
            "token_states_same_bits_full_batch": bool((bits(st_sh) == bits(st_full)).all())}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host-devices", type=int, default=0,
                   help="on CPU, split the host into N devices (sets XLA_FLAGS; must run "
                        "before jax is imported)")
    p.add_argument("--stoc-len", type=int, default=64)
    args = p.parse_args(argv)
    if args.host_devices:
        if "jax" in sys.modules:
            print("warning: jax already imported, --host-devices ignored", file=sys.stderr)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count="
                                   f"{args.host_devices}").strip()
    import time

    import jax

    from scmp_jax_examples import minilm
    from scmp_jax_examples.sentences import SENTENCES

    loaded = minilm.load()
    t0 = time.perf_counter()
    r = compare(SENTENCES, default_rules(args.stoc_len), loaded=loaded)
    print(f"devices: {len(jax.devices())} ({jax.default_backend()}), "
          f"{time.perf_counter() - t0:.1f}s (5 compiles)")
    print(f"embeddings {r['embeddings'].shape}, sharding {r['sharding']}")
    print(f"rows per device: {r['rows_per_device']}")
    print(f"bit-identical to the one-device run (per-device chunks): {r['same_bits']}")
    print(f"token states bit-identical to the one-device whole-batch run: "
          f"{r['token_states_same_bits_full_batch']}")
    print(f"embeddings vs one-device whole-batch run: max |diff| "
          f"{r['max_abs_diff_full_batch']:.3g} (XLA CPU's batch-size-dependent L2 norm)")
    return 0 if r["same_bits"] and r["token_states_same_bits_full_batch"] else 1

if __name__ == "__main__":
    raise SystemExit(main())
