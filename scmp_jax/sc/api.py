"""Public SC matmul: ``sc_matmul(a, b, granularity, ...)`` (SPEC.md sections 2-7).

Validation happens here, once; so does dispatch: the implementation is
resolved into a ``Backend`` (``_src.dispatch.resolve``) that travels in the
frozen ``Static`` config, and the call goes to ``xla.sc_matmul`` or
``pallas.sc_matmul`` (per shard under ``sharding.run``; ``*.sc_matmul_mixed``
for mixed stream lengths). The implementations receive only resolved static
values and device tables.
"""
from __future__ import annotations

import dataclasses
import gc

import jax
import jax.numpy as jnp
import numpy as np

from .._src import dispatch
from .._src import grad as GD
from .._src import granularity as GR
from .._src.errors import InvalidDtypeError, check_bool, check_float, is_int, with_dtype
from . import dense, limits, pallas, sharding, xla
from .config import SCConfig, as_config
from .mixed import mixed_tables
from .static import Static
from .tables import OWEN_MODES, enable_tables, side_streams

__all__ = ["sc_matmul", "clear_caches", "GRANULARITIES", "MODES", "InvalidDtypeError",
           "DEFAULT_TABLE_CAP_BYTES", "validate", "count_method"]

GRANULARITIES = GR.GRANULARITIES
MODES = ("bipolar", "unipolar")
COUNTS = (None, "gather", "dense")
DEFAULT_TABLE_CAP_BYTES = 256 << 20


def validate(a, b, granularity, mode, sc_prec, stoc_len, chunk_d, group_a, group_b,
             rng_levels, halve, smooth_scales, scramble) -> Static:
    """The ``Static`` config of validated arguments (ValueError naming the bad one);
    its backend is the default until ``sc_matmul`` resolves it."""
    gran = GR.get(granularity)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if scramble not in OWEN_MODES:
        raise ValueError(f"scramble must be one of {OWEN_MODES}, got {scramble!r}")
    if not is_int(sc_prec) or not 2 <= sc_prec <= 12:
        raise ValueError(f"sc_prec must be an int in [2, 12], got {sc_prec!r}")
    sa, sb = np.shape(a), np.shape(b)
    if len(sa) not in (2, 3):
        raise ValueError(f"a must be 2D or 3D, got shape {sa}")
    if len(sb) not in (2, 3):
        raise ValueError(f"b must be 2D or 3D, got shape {sb}")
    if len(sa) != len(sb):
        raise ValueError(f"a and b must have the same rank, got a {sa} and b {sb}")
    if sa[-1] != sb[-1]:
        raise ValueError(f"a and b must share the inner dim D, got a {sa} and b {sb}")
    if len(sa) == 3 and sa[0] != sb[0]:
        raise ValueError(f"a and b must have the same batch size, got a {sa} and b {sb}")
    if 0 in sa or 0 in sb:
        raise ValueError(f"a and b must be non-empty, got a {sa} and b {sb}")
    for name, g in (("group_a", group_a), ("group_b", group_b)):
        if not is_int(g) or g < 1:
            raise ValueError(f"{name} must be an int >= 1, got {g!r}")
    if not is_int(chunk_d) or chunk_d < 0:
        raise ValueError(f"chunk_d must be an int >= 0, got {chunk_d!r}")
    gran.check(ndim=len(sa), mode=mode, chunk_d=chunk_d)
    B = 2 ** sc_prec
    if check_bool(halve, "halve_bipolar_stoc_len") and mode == "bipolar":
        stoc_len = B // 2 if stoc_len is None else stoc_len
        rng_levels = B // 2 if rng_levels is None else rng_levels
    L = B if stoc_len is None else stoc_len
    G = B if rng_levels is None else rng_levels
    if not is_int(L) or not 1 <= L <= B:
        raise ValueError(f"stoc_len must be an int in [1, 2**sc_prec={B}], got {L!r}")
    if not is_int(G) or not 1 <= G <= B:
        raise ValueError(f"rng_levels must be an int in [1, 2**sc_prec={B}], got {G!r}")
    if smooth_scales is not None and np.shape(smooth_scales) != (sa[-1],):
        raise ValueError(f"smooth_scales must have shape (D,)=({sa[-1]},), "
                         f"got {np.shape(smooth_scales)}")
    return Static(gran, mode, int(sc_prec), int(L), int(G), int(chunk_d), int(group_a),
                  int(group_b))


def sc_matmul(a, b, granularity: str = "per_row", *, mode: str = "bipolar", sc_prec: int = 8,
              stoc_len=None, chunk_d: int = 0, group_a: int = 1, group_b: int = 1,
              rng_levels=None, config=None, halve_bipolar_stoc_len: bool = False,
              smooth_scales=None, scramble: str = "bitrev", implementation=None,
              table_cap_bytes: int = DEFAULT_TABLE_CAP_BYTES, row_stoc_len=None,
              col_stoc_len=None, stoc_levels=None, counts=None, grad=None):
    """Stochastic-computing matmul ``a @ b.T`` (float32 out).

    a: ``(N, D)`` or ``(H, N, D)``; b: ``(M, D)`` or ``(H, M, D)``, any float
    dtype (upcast to float32). Returns ``(N, M)`` or ``(H, N, M)`` float32.
    ``granularity``: per_tensor | per_row (``group_a``/``group_b`` rows share a
    scale; ``chunk_d`` splits D) | per_head (3D, bipolar). ``mode``: bipolar
    (sign-magnitude) | unipolar (zero point). ``stoc_len`` (L) and
    ``rng_levels`` (G) default to ``2**sc_prec`` (halved for bipolar with
    ``halve_bipolar_stoc_len``). ``config``: ``SCConfig`` or the reference's
    dict (default: Sobol simple). ``scramble``: Owen mask bitrev | counter |
    off | random. ``smooth_scales`` (D,): SmoothQuant, ``(a / s, b * s)``.
    ``table_cap_bytes``: above it the count table is not built whole; tables
    are built on device per chunk of the inner dim, each under the cap (same
    integers). ``counts``: how the exact integer counts are formed, "gather"
    (one table lookup per product) or "dense" (an int8 matmul, ``sc.dense``:
    stoc_len <= 256 and at most 128 quantization levels); None picks dense on
    GPU for large outputs where it applies, the gather elsewhere (same
    integers either way). ``grad``: None (differentiating raises
    ``NotDifferentiableError``) | "ste" (straight-through: same value, the
    tangent of the exact ``a @ b.T``). Jit-friendly: no host
    synchronisation; all non-array arguments are static.
    """
    GD.check_grad(grad, "sc_matmul")
    mixed = row_stoc_len is not None or col_stoc_len is not None
    if mixed:
        _check_mixed(a, b, granularity, stoc_len, chunk_d)
    st = validate(a, b, granularity, mode, sc_prec, stoc_len, chunk_d, group_a, group_b,
                  rng_levels, halve_bipolar_stoc_len, smooth_scales, scramble)
    a = check_float(a, "a")
    b = check_float(b, "b")
    if smooth_scales is not None:
        smooth_scales = check_float(smooth_scales, "smooth_scales")
    st = dataclasses.replace(st, backend=dispatch.resolve(implementation, op="sc_matmul"))
    impl = pallas if st.backend.pallas else xla
    cfg: SCConfig = as_config(config)
    D = np.shape(a)[-1]
    Dt = min(chunk_d, D) if chunk_d else D
    if not is_int(table_cap_bytes) or table_cap_bytes < 0:
        raise ValueError(f"table_cap_bytes must be an int >= 0, got {table_cap_bytes!r}")
    shard = sharding.plan(a, b, st)
    count_mode = count_method(counts, st, a, b, mixed)
    if not mixed:
        limits.check(mode=st.mode, p=st.p, L=st.L, D=D, chunk_d=st.chunk_d, counts=count_mode)
    if mixed:
        if shard is not None:
            raise ValueError("row_stoc_len / col_stoc_len do not support sharded a, b yet")
        cap = int(table_cap_bytes)

        def run(a, b, s, rl, cl):
            return _mixed_call(impl, a, b, s, rl, cl, stoc_levels, st, cfg, scramble, cap)
        args = (a, b, smooth_scales, row_stoc_len, col_stoc_len)
    else:
        tabs = enable_tables(cfg, Dt, st.p, st.L, st.G, scramble, int(table_cap_bytes))
        st = dataclasses.replace(st, cap=int(table_cap_bytes), counts=count_mode)

        def run(a, b, s):
            if shard is not None:
                return sharding.run(impl.sc_matmul, a, b, s, tabs, st, shard)
            return impl.sc_matmul(a, b, s, tabs, st)
        args = (a, b, smooth_scales)
    # smooth_scales: the exact product (a / s) @ (b * s).T is a @ b.T
    return GD.call(run, args, op="sc_matmul", grad=grad,
                   exact=lambda a, b, *_: GD.exact_matmul(a, b))

def count_method(counts, st: Static, a, b, mixed: bool) -> str:
    """"gather" or "dense" for the ``counts`` argument; None: dense where it
    applies, on the GPU (``st.backend.gpu``), for large outputs."""
    if counts not in COUNTS:
        raise ValueError(f"counts must be one of {COUNTS}, got {counts!r}")
    ok = dense.eligible(st.mode, st.p, st.L, st.G) and not mixed
    fits = limits.fits(mode=st.mode, p=st.p, L=st.L, D=np.shape(a)[-1], chunk_d=st.chunk_d,
                       counts="dense")
    if counts == "dense" and not ok:
        raise ValueError("counts='dense' needs stoc_len <= 256, at most 128 quantization "
                         "levels (bipolar sc_prec <= 8, unipolar <= 7) and no "
                         f"row_stoc_len / col_stoc_len; got stoc_len={st.L}, sc_prec={st.p}, "
                         f"mode={st.mode!r}")
    if counts is None:
        H = np.shape(a)[0] if np.ndim(a) == 3 else 1
        big = dense.worth_it(H, np.shape(a)[-2], np.shape(b)[-2])
        return "dense" if ok and fits and big and st.backend.gpu else "gather"
    return counts


def _check_mixed(a, b, granularity, stoc_len, chunk_d):
    if granularity != "per_row" or np.ndim(a) != 2 or np.ndim(b) != 2:
        raise ValueError("row_stoc_len / col_stoc_len require granularity='per_row' and 2D a, b")
    if stoc_len is not None:
        raise ValueError("stoc_len must be None when row_stoc_len or col_stoc_len is given")
    if chunk_d:
        raise ValueError("chunk_d must be 0 with row_stoc_len / col_stoc_len")


def _lengths(x, size, name, B):
    if x is None:
        return jnp.full((size,), B, jnp.int32), ()
    x, dt = with_dtype(x)
    if not jnp.issubdtype(dt, jnp.integer):
        raise ValueError(f"{name} must be an int array, got dtype {dt}")
    if np.shape(x) != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {np.shape(x)}")
    try:
        host = np.asarray(x)
    except Exception:          # traced under jit: levels must be given
        return jnp.asarray(x, jnp.int32), None
    if host.size and (host.min() < 0 or host.max() > B):
        raise ValueError(f"{name} values must be in [0, 2**sc_prec={B}]")
    return jnp.asarray(host, jnp.int32), tuple(int(v) for v in np.unique(host))


def _mixed_call(impl, a, b, smooth, row_len, col_len, levels, st, cfg, scramble, cap):
    B = 2 ** st.p
    N, M = np.shape(a)[0], np.shape(b)[0]
    rl, rv = _lengths(row_len, N, "row_stoc_len", B)
    cl, cv = _lengths(col_len, M, "col_stoc_len", B)
    if levels is None:
        if rv is None or cv is None:
            raise ValueError("stoc_levels (a static tuple of the lengths used) is required "
                             "when row_stoc_len / col_stoc_len are traced (under jax.jit)")
        levels = set(rv) | set(cv) | ({B} if row_len is None or col_len is None else set())
    levels = tuple(sorted({int(v) for v in levels} - {0}, reverse=True))
    for L in levels:
        if not is_int(L) or not 1 <= L <= B:
            raise ValueError(f"stoc_levels must hold ints in [0, 2**sc_prec={B}], got {L!r}")
    if row_len is None or col_len is None:
        levels = tuple(sorted(set(levels) | {B}, reverse=True))
    if not levels:                               # everything pruned
        return jnp.zeros((N, M), jnp.float32)
    q = 2 ** (st.p - 1) - 1 if st.mode == "bipolar" else 2 ** st.p - 1
    D = np.shape(a)[-1]
    limits.check(mode=st.mode, p=st.p, L=max(levels), D=D)
    mt, shift, vp = mixed_tables(cfg, D, st.p, levels, st.G, scramble, cap, q)
    st = dataclasses.replace(st, cap=cap)
    return impl.sc_matmul_mixed(a, b, smooth, rl, cl, mt, st=st, levels=levels, shift=shift,
                                vp=vp, has_col=col_len is not None)


def clear_caches() -> None:
    """Drop cached stream tables and every compiled program (``jax.clear_caches``).

    Each distinct (shape, static arguments) compiles one XLA program; on CPU each
    keeps ~46 memory maps, so a process compiling >1000 of them reaches Linux's
    ``vm.max_map_count`` (65530) and crashes inside the compiler. Long sweeps over
    many shapes should call this now and then.
    """
    mixed_tables.cache_clear()
    sharding.program.cache_clear()
    enable_tables.cache_clear()
    side_streams.cache_clear()
    jax.clear_caches()
    gc.collect()
