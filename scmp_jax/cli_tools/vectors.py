"""``scmp-jax export-vectors``: golden per-cycle vectors for an RTL testbench.

Everything exported is computed by the NumPy golden model (``golden/``, the
executable SPEC): streams from ``golden.streams.side_streams``, boundaries and
signs from ``golden.quant``, floats from ``golden.sc_matmul_bitlevel``. The
JAX path (``scmp_jax.sc_matmul``) is then run on the same operands as a
sanity check and must give the same float32 bits.

Per inner index ``d`` and cycle ``t < L`` (SPEC sections 3-6):

* ``ra[d, t]``, ``rb[d, t]``: the comparator values ``r'`` of side a / b;
* ``a_bits[n, d, t] = ra[d, t] < a_boundary[n, d]``, ``k[n, d] = sum_t a_bits``
  (the enable count: the b stream is enabled in cycles ``t < k``);
* ``b_bits[m, d, t] = rb[d, t] < b_boundary[m, d]``;
* ``c[n, m, d] = sum_{t < k[n, d]} b_bits[m, d, t]`` (the product count);
* ``acc[n, m] = sum_d a_sign[n, d] * b_sign[m, d] * c[n, m, d]`` (bipolar) or
  ``sum_d c[n, m, d]`` (unipolar): the integer accumulator;
* ``out``: the float32 result (scales, and for unipolar the zero-point
  correction, applied to ``acc`` in SPEC section 6's order).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import hexio

__all__ = ["CONFIG_BUILDERS", "build_config", "golden_vectors", "write_vectors",
           "check_jax", "export_vectors", "hex_values"]

#: config names accepted by ``--config`` -> golden.configs builder (``default`` = sobol_simple)
CONFIG_BUILDERS = ("default", "sobol_simple", "sobol_antithetic", "shared_lfsr",
                   "per_element_scramble", "fully_independent")


def build_config(name: str, D: int, sc_prec: int, seed: int = 0) -> dict:
    """The reference-form dict config of builder ``name`` for ``D`` inner indices."""
    from golden import configs as C

    if name in ("default", "sobol_simple"):
        return C.sobol_simple(D)
    if name == "sobol_antithetic":
        return C.sobol_antithetic(D)
    if name == "shared_lfsr":
        return C.shared_lfsr(D, sc_prec)
    if name == "per_element_scramble":
        return C.per_element_scramble(D, sc_prec, rng_seed=seed)
    if name == "fully_independent":
        return C.fully_independent(D, sc_prec, rng_seed=seed)
    raise ValueError(f"unknown config {name!r}; one of {CONFIG_BUILDERS}")


def golden_vectors(a, b, *, granularity: str = "per_row", mode: str = "bipolar",
                   sc_prec: int = 8, stoc_len=None, rng_levels=None, scramble: str = "bitrev",
                   config: dict | None = None) -> dict:
    """All arrays of the module doc, from the golden model only (2D ``a (N,D)``, ``b (M,D)``)."""
    import golden
    from golden import quant as Q
    from golden import sc as S

    if granularity not in ("per_row", "per_tensor"):
        raise ValueError("export-vectors supports granularity per_row and per_tensor")
    a, b, L, G = S.resolve(a, b, granularity, mode, sc_prec, stoc_len, 0, 1, 1, rng_levels,
                           False, None, scramble)
    if a.ndim != 2:
        raise ValueError(f"export-vectors needs 2D operands, got a {a.shape}, b {b.shape}")
    D, p = a.shape[1], sc_prec
    config = build_config("default", D, p) if config is None else config
    ra = golden.side_streams(config, "q", D, p, L, G, scramble)
    rb = golden.side_streams(config, "k", D, p, L, G, scramble)
    quant = Q.quantize_per_row if granularity == "per_row" else Q.quantize_per_tensor
    qa, qb = quant(a, mode, p, G), quant(b, mode, p, G)
    ba, bb = qa["boundary"], qb["boundary"]
    a_bits = ra[None, :, :] < ba[:, :, None]                    # (N, D, L)
    b_bits = rb[None, :, :] < bb[:, :, None]                    # (M, D, L)
    k = a_bits.sum(axis=2)                                      # (N, D)
    enable = np.arange(L)[None, None, :] < k[:, :, None]        # (N, D, L)
    c = np.einsum("ndt,mdt->nmd", enable.astype(np.int64), b_bits.astype(np.int64))
    if mode == "bipolar":
        acc = np.einsum("nd,md,nmd->nm", qa["sign"], qb["sign"], c)
    else:
        acc = c.sum(axis=2)
    out = golden.sc_matmul_bitlevel(a, b, granularity, mode=mode, sc_prec=p, stoc_len=L,
                                    rng_levels=G, config=config, scramble=scramble)
    # the accumulator is the spec's: the golden float assembly of acc gives out bit for bit
    f = np.float32(Q.qmax(mode, p) ** 2) / np.float32(L)
    with np.errstate(all="ignore"):
        again = S._assemble(acc, qa, qb, D, f, mode)
    if not np.array_equal(hexio.float32_bits(again), hexio.float32_bits(out)):
        raise AssertionError("exported accumulators do not reproduce the golden float output")
    v = dict(a=a, b=b, a_boundary=ba, b_boundary=bb, ra=ra, rb=rb,
             a_bits=a_bits.astype(np.uint8), b_bits=b_bits.astype(np.uint8), k=k, c=c,
             acc=acc, out=out, a_scale=qa["scale"], b_scale=qb["scale"],
             sc_prec=np.int64(p), stoc_len=np.int64(L), rng_levels=np.int64(G),
             scramble=np.str_(scramble), mode=np.str_(mode), granularity=np.str_(granularity),
             config_json=np.str_(json.dumps(config)))
    if mode == "bipolar":
        v["a_sign"], v["b_sign"] = qa["sign"].astype(np.int8), qb["sign"].astype(np.int8)
    else:
        v["a_zp"], v["b_zp"] = qa["zp"], qb["zp"]
        v["a_rowsum"], v["b_rowsum"] = qa["rowsum"], qb["rowsum"]
    return v


def _hex_specs(v: dict) -> list[tuple]:
    """(file, array key, bits, signed, kind, meaning) of every hex file."""
    p, L, G = int(v["sc_prec"]), int(v["stoc_len"]), int(v["rng_levels"])
    rbits = p if G == 2 ** p else max(1, (G - 1).bit_length())
    cbits = max(1, L.bit_length())
    specs = [
        ("a.hex", "a", 32, False, "f32", "operand a (N, D), float32 bit patterns"),
        ("b.hex", "b", 32, False, "f32", "operand b (M, D), float32 bit patterns"),
        ("a_boundary.hex", "a_boundary", G.bit_length(), False, "int",
         "a comparator boundaries (N, D), in [0, rng_levels]"),
        ("b_boundary.hex", "b_boundary", G.bit_length(), False, "int",
         "b comparator boundaries (M, D), in [0, rng_levels]"),
        ("ra.hex", "ra", rbits, False, "int", "a-side comparator values r'_a (D, L)"),
        ("rb.hex", "rb", rbits, False, "int", "b-side comparator values r'_b (D, L)"),
        ("a_bits.hex", "a_bits", L, False, "stream",
         "A bit streams (N, D): one L-bit word per (n, d), cycle t at bit t"),
        ("b_bits.hex", "b_bits", L, False, "stream",
         "B bit streams (M, D): one L-bit word per (m, d), cycle t at bit t"),
        ("k.hex", "k", cbits, False, "int", "enable counts k = popcount(A) (N, D)"),
        ("c.hex", "c", cbits, False, "int", "product counts c = sum_{t<k} B[t] (N, M, D)"),
        ("acc.hex", "acc", 32, True, "int", "integer accumulators (N, M), two's complement"),
        ("out.hex", "out", 32, False, "f32", "float32 outputs (N, M), bit patterns"),
        ("a_scale.hex", "a_scale", 32, False, "f32", "a scales per row (N,), float32 bits"),
        ("b_scale.hex", "b_scale", 32, False, "f32", "b scales per row (M,), float32 bits"),
    ]
    if "a_sign" in v:
        specs += [("a_sign.hex", "a_sign", 1, False, "sign", "a signs (N, D): 1 = negative"),
                  ("b_sign.hex", "b_sign", 1, False, "sign", "b signs (M, D): 1 = negative")]
    else:
        specs += [("a_zp.hex", "a_zp", 32, False, "f32", "a zero points (N,), float32 bits"),
                  ("b_zp.hex", "b_zp", 32, False, "f32", "b zero points (M,), float32 bits"),
                  ("a_rowsum.hex", "a_rowsum", 32, True, "int", "a code row sums (N,)"),
                  ("b_rowsum.hex", "b_rowsum", 32, True, "int", "b code row sums (M,)")]
    return specs


_STALE = ("a_sign.hex", "b_sign.hex", "a_zp.hex", "b_zp.hex", "a_rowsum.hex", "b_rowsum.hex")


def hex_values(v: dict, key: str, kind: str):
    """The integers a hex file holds for array ``key`` (row-major)."""
    x = v[key]
    if kind == "f32":
        return hexio.float32_bits(x).reshape(-1)
    if kind == "stream":
        return hexio.pack_streams(x)
    if kind == "sign":
        return (np.asarray(x) < 0).astype(np.int64).reshape(-1)
    return np.asarray(x).reshape(-1)


def write_vectors(v: dict, out_dir) -> dict:
    """Write ``vectors.npz``, the hex files and ``manifest.json``; return the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in _STALE:                      # files of another mode from an earlier run
        (out_dir / stale).unlink(missing_ok=True)
    np.savez(out_dir / "vectors.npz", **v)
    files = {}
    for fname, key, bits, signed, kind, meaning in _hex_specs(v):
        n = hexio.write_hex(out_dir / fname, hex_values(v, key, kind), bits, signed)
        shape = np.shape(v[key])[:2] if kind == "stream" else np.shape(v[key])
        files[fname] = dict(array=key, shape=list(shape),
                            lines=n, bits=bits, hex_digits=hexio.hex_digits(bits),
                            signed=signed, kind=kind, meaning=meaning)
    manifest = dict(
        spec="golden model (golden/, SPEC.md); see scmp_jax/cli_tools/vectors.py",
        order="row-major (C) over the array shape; one value per line, lowercase hex, no prefix",
        streams="bit t of a stream word is cycle t (LSB = cycle 0)",
        params={k: (v[k].item() if hasattr(v[k], "item") else v[k])
                for k in ("sc_prec", "stoc_len", "rng_levels", "scramble", "mode", "granularity")},
        shapes=dict(N=int(v["a"].shape[0]), M=int(v["b"].shape[0]), D=int(v["a"].shape[1]),
                    L=int(v["stoc_len"])),
        files=files)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def check_jax(v: dict, config: dict) -> None:
    """Assert that ``scmp_jax.sc_matmul`` gives the golden float32 bits on the same operands."""
    import scmp_jax

    y = np.asarray(scmp_jax.sc_matmul(
        v["a"], v["b"], str(v["granularity"]), mode=str(v["mode"]), sc_prec=int(v["sc_prec"]),
        stoc_len=int(v["stoc_len"]), rng_levels=int(v["rng_levels"]), config=config,
        scramble=str(v["scramble"])), np.float32)
    same = hexio.float32_bits(y) == hexio.float32_bits(v["out"])
    if not same.all():
        raise AssertionError(f"JAX sc_matmul differs from the golden vectors in "
                             f"{int((~same).sum())} of {same.size} outputs")


def export_vectors(out_dir, *, sc_prec: int = 8, stoc_len=None, rng_levels=None,
                   scramble: str = "bitrev", config: str = "default", D: int = 16,
                   rows: int = 4, cols=None, seed: int = 0, mode: str = "bipolar",
                   granularity: str = "per_row", npz=None, log=None) -> dict:
    """Build (random ``(rows, D)``/``(cols, D)`` normal operands, or ``a``/``b`` of ``npz``),
    write and JAX-check the golden vectors; return the manifest."""
    import sys

    log = sys.stdout if log is None else log
    if npz is not None:
        with np.load(npz) as z:
            a, b = np.asarray(z["a"], np.float32), np.asarray(z["b"], np.float32)
    else:
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((rows, D)).astype(np.float32)
        b = rng.standard_normal((rows if cols is None else cols, D)).astype(np.float32)
    cfg = build_config(config, a.shape[-1], sc_prec, seed)
    v = golden_vectors(a, b, granularity=granularity, mode=mode, sc_prec=sc_prec,
                       stoc_len=stoc_len, rng_levels=rng_levels, scramble=scramble, config=cfg)
    manifest = write_vectors(v, out_dir)
    check_jax(v, cfg)
    s = manifest["shapes"]
    print(f"wrote {len(manifest['files'])} hex files + vectors.npz + manifest.json to {out_dir} "
          f"(N={s['N']} M={s['M']} D={s['D']} L={s['L']} G={int(v['rng_levels'])}); "
          "JAX sc_matmul matches the golden outputs bit for bit", file=log)
    return manifest
