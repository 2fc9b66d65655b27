"""The tests' one helpers module: exact comparisons, operand makers and
Hypothesis strategies shared by the golden comparisons, fp4 crafted values,
and the package import graph read by the layout tests."""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import flax.linen as nn
import numpy as np
from hypothesis import strategies as st

import golden
import scmp_jax
from golden import fp4 as G

# Measured CPU seconds per test (tests/durations.json, recorded with
# ``python -m pytest -n 2 --record-durations tests/durations.json``). conftest marks
# ``slow`` every test that costs more than SLOW_ALONE seconds, and every case but the
# cheapest of a parametrized test that costs more than SLOW_CASE: the README's test
# command leaves them out and .ci/run runs them after it (``python -m pytest -n 2 -m slow``).
DURATIONS = Path(__file__).resolve().parent / "durations.json"
SLOW_ALONE = 25.0
SLOW_CASE = 4.0


def load_durations(path=DURATIONS) -> dict:
    """``{node id: seconds}`` from ``path`` ({} when it does not exist)."""
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def slow_ids(durations: dict) -> set:
    """The node ids the rule above marks slow (unmeasured tests stay fast)."""
    by_fn = {}
    for nodeid, sec in durations.items():
        by_fn.setdefault(nodeid.split("[", 1)[0], []).append((sec, nodeid))
    slow = set()
    for cases in by_fn.values():
        cases.sort()
        slow |= {n for i, (sec, n) in enumerate(cases)
                 if sec > SLOW_ALONE or (i > 0 and sec > SLOW_CASE)}
    return slow

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "scmp_jax"
DATA = Path(__file__).resolve().parent / "data"
F32 = np.float32

DISTS = ("normal", "outliers", "zero_rows", "constant_rows", "tiny", "huge", "positive",
         "negative", "ties", "uniform_int")


def assert_same_bits(out, ref):
    """Same float32 bits everywhere; NaN positions equal (payloads may differ)."""
    out = np.asarray(out)
    ref = np.asarray(ref)
    assert out.dtype == np.float32 and ref.dtype == np.float32, (out.dtype, ref.dtype)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    nan_o, nan_r = np.isnan(out), np.isnan(ref)
    assert np.array_equal(nan_o, nan_r), f"NaN mask differs at {np.argwhere(nan_o != nan_r)[:5]}"
    ob = out.view(np.int32)[~nan_o]
    rb = ref.view(np.int32)[~nan_r]
    bad = np.flatnonzero(ob != rb)
    assert bad.size == 0, (f"{bad.size} of {ob.size} elements differ; first: "
                           f"{out[~nan_o][bad[:3]]} vs {ref[~nan_r][bad[:3]]}")


def bits(x) -> np.ndarray:
    """float32 bits of ``x`` as int32, for ``==`` comparisons."""
    return np.asarray(x, np.float32).view(np.int32)


def make_values(shape, dist: str, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    x = r.standard_normal(shape).astype(np.float32)
    if dist == "outliers":
        mask = r.random(shape) < 0.02
        x = np.where(mask, x * 100.0, x).astype(np.float32)
        if shape[-1] > 2:  # an outlier channel
            x[..., r.integers(shape[-1])] *= 30.0
    elif dist == "zero_rows":
        x[..., r.random(shape[-2]) < 0.4, :] = 0.0
    elif dist == "constant_rows":
        x[...] = np.float32(r.standard_normal())
    elif dist == "tiny":
        x = (x * 1e-30).astype(np.float32)
    elif dist == "huge":
        x = (x * 1e30).astype(np.float32)
    elif dist == "positive":
        x = np.abs(x) + np.float32(0.5)
    elif dist == "negative":
        x = -np.abs(x) - np.float32(0.25)
    elif dist == "ties":
        # multiples of 0.5 of a power-of-two grid: many exact rounding ties
        x = (np.round(x * 8.0) / 2.0).astype(np.float32)
    elif dist == "uniform_int":
        x = r.integers(-127, 128, shape).astype(np.float32)
    return x.astype(np.float32)


def config_dict(kind: str, D: int, p: int, seed: int):
    """A reference-style dict config of one of the reference's shapes."""
    r = np.random.default_rng(seed)
    taps = golden.lfsr_tap_sets(p)
    if kind == "default":
        return None
    if kind == "sobol_simple":
        return golden.configs.sobol_simple(D)
    if kind == "antithetic":
        return golden.configs.sobol_antithetic(D)
    if kind == "shared_lfsr":
        return golden.configs.shared_lfsr(D, p, seed=int(r.integers(1, 2 ** p)))
    if kind == "independent_lfsr":
        perm = [int(v) for v in r.permutation(p)]
        return golden.configs.independent_lfsr(
            D, p, taps[int(r.integers(len(taps)))], taps[int(r.integers(len(taps)))],
            int(r.integers(1, 2 ** p)), int(r.integers(1, 2 ** p)), None, perm)
    if kind == "per_element_scramble":
        return golden.configs.per_element_scramble(D, p, seed=int(r.integers(1, 2 ** p)),
                                                    rng_seed=seed, k_reverse_of_q=bool(seed % 2))
    if kind == "fully_independent":
        return golden.configs.fully_independent(D, p, rng_seed=seed)
    if kind == "true_random":
        return {"rng_pool": [{"type": "true_random", "seed": seed},
                             {"type": "true_random", "seed": seed + 1}],
                "sng": {"q": [{"rng_id": 0, "scramble": None} for _ in range(D)],
                        "k": [{"rng_id": 1, "scramble": None, "complement": d % 3 == 0}
                              for d in range(D)]}}
    if kind == "sobol_custom":
        seed_q = [1] + [int(2 * r.integers(0, 2 ** i) + 1) for i in range(1, p)]
        return {"rng_pool": [{"type": "sobol", "seed": seed_q}, {"type": "sobol", "seed_type": "k"}],
                "sng": {"q": [{"rng_id": 0, "scramble": None} for _ in range(D)],
                        "k": [{"rng_id": 1, "scramble": list(range(p))[::-1]} for _ in range(D)]}}
    raise ValueError(kind)


CONFIG_KINDS = ("default", "sobol_simple", "antithetic", "shared_lfsr", "independent_lfsr",
                "per_element_scramble", "fully_independent", "true_random", "sobol_custom")


@st.composite
def sc_cases(draw, max_rows=48, max_d=300):
    """One sc_matmul call: (a, b, kwargs). Covers every granularity/mode/rank."""
    rank = draw(st.sampled_from([2, 2, 3]))
    granularity = draw(st.sampled_from(["per_tensor", "per_row", "per_row", "per_head"]
                                       if rank == 3 else ["per_tensor", "per_row", "per_row"]))
    mode = "bipolar" if granularity == "per_head" else draw(st.sampled_from(["bipolar",
                                                                            "unipolar"]))
    p = draw(st.sampled_from([2, 3, 4, 5, 6, 7, 8, 8, 8, 9, 10]))
    B = 2 ** p
    big = p >= 9
    N = draw(st.integers(1, 12 if big else max_rows))
    M = draw(st.integers(1, 12 if big else max_rows))
    D = draw(st.integers(1, 48 if big else max_d))
    H = draw(st.integers(1, 3)) if rank == 3 else None
    halve = draw(st.booleans())
    stoc_len = draw(st.one_of(st.none(), st.integers(1, B)))
    if halve and mode == "bipolar" and stoc_len is None:
        stoc_len = None  # halved by the call
    rng_levels = draw(st.one_of(st.none(), st.integers(1, B)))
    chunk_d = 0
    if granularity == "per_row" and mode == "bipolar" and rank == 2 and draw(st.booleans()):
        chunk_d = draw(st.integers(1, D + 3))
    group_a = draw(st.integers(1, N + 2))
    group_b = draw(st.integers(1, M + 2))
    scramble = draw(st.sampled_from(["bitrev", "bitrev", "counter", "off", "random"]))
    kind = draw(st.sampled_from(CONFIG_KINDS))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    Dt = min(chunk_d, D) if chunk_d else D
    config = config_dict(kind, Dt, p, seed)
    dist_a = draw(st.sampled_from(DISTS))
    dist_b = draw(st.sampled_from(DISTS))
    shape_a = (N, D) if rank == 2 else (H, N, D)
    shape_b = (M, D) if rank == 2 else (H, M, D)
    a = make_values(shape_a, dist_a, seed)
    b = make_values(shape_b, dist_b, seed + 7)
    smooth = None
    if draw(st.integers(0, 4)) == 0:
        smooth = (np.random.default_rng(seed + 3).random(D) * 4 + 0.25).astype(np.float32)
    kwargs = dict(granularity=granularity, mode=mode, sc_prec=p, stoc_len=stoc_len,
                  chunk_d=chunk_d, group_a=group_a, group_b=group_b, rng_levels=rng_levels,
                  config=config, halve_bipolar_stoc_len=halve, smooth_scales=smooth,
                  scramble=scramble)
    return a, b, kwargs


def call_golden(a, b, kwargs, bitlevel=False):
    kw = dict(kwargs)
    g = kw.pop("granularity")
    fn = golden.sc_matmul_bitlevel if bitlevel else golden.sc_matmul
    return fn(a, b, g, **kw)


_CALLS = 0


def call_jax(a, b, kwargs, implementation="xla", **extra):
    """scmp_jax.sc_matmul on a case from ``sc_cases``, as NumPy."""
    kw = dict(kwargs)
    g = kw.pop("granularity")
    trace = os.environ.get("SCMP_TRACE_FILE")       # last line survives a crash
    if trace:
        with open(trace, "a") as f:
            cfg = kw.get("config")
            f.write(repr((a.shape, b.shape, {k: v for k, v in kw.items()
                                             if k not in ("config", "smooth_scales")},
                          None if cfg is None else (len(cfg["rng_pool"]), cfg["rng_pool"][0]),
                          kw.get("smooth_scales") is not None, extra)) + "\n")
    global _CALLS
    _CALLS += 1
    if _CALLS % 300 == 0:        # thousands of examples: stay under vm.max_map_count
        scmp_jax.clear_caches()
    return np.asarray(scmp_jax.sc_matmul(a, b, g, implementation=implementation, **kw, **extra))


# e2m1 codes in value order with -0 below +0: an interval of values maps to a range of ranks
_E2M1_RANK = np.argsort(np.array([15, 14, 13, 12, 11, 10, 9, 8, 0, 1, 2, 3, 4, 5, 6, 7]))


def check_fp4_transform(codes, scale_bytes, x, transform, *, group_size, scale_dtype,
                        scale_scale, global_scale, rounding="even", rtol=1e-5,
                        max_code_fraction=2e-3, max_scale_fraction=1e-2):
    """End-to-end check of ``fp4.quantize(x, ..., transform=T)`` (packed codes,
    scale bytes) against ``golden.fp4.quantize(x, ..., transform=T)``.

    SPEC.md section 9.7 lets an implementation's transformed value ``y`` differ
    from golden's ``y_g`` by ``tol = rtol * |y_g| + rtol * max|y_g|``. Every
    differing scale byte must be one that golden's encoder gives for some group
    maximum in ``[amax_lo, amax_hi]`` (each ``|y_g| -+ tol``); every differing
    code must be one that golden's e2m1 rounding gives for some value in
    ``[y_g - tol, y_g + tol]`` divided by the implementation's own ``p``.
    Blocks holding NaN/Inf agree exactly. At most ``max_code_fraction`` of the
    codes and ``max_scale_fraction`` of the scale bytes may differ. Returns
    (differing codes, differing scale bytes, elements whose interval holds an
    e2m1 rounding boundary)."""
    G = golden.fp4
    F32 = np.float32
    kw = dict(group_size=group_size, scale_dtype=scale_dtype, scale_scale=scale_scale,
              global_scale=global_scale, rounding=rounding)
    ref = G.quantize(x, transform=transform, **kw)
    y = G.block_transform(x, transform).astype(np.float64)
    codes, sb = G.unpack(np.asarray(codes)), np.asarray(scale_bytes, np.uint8)
    ref_codes, ref_sb = G.unpack(ref["codes"]), ref["scales"]
    assert codes.shape == ref_codes.shape and sb.shape == ref_sb.shape
    K = y.shape[-1]
    yg = y.reshape(y.shape[:-1] + (K // group_size, group_size))
    finite = np.isfinite(yg).all(axis=-1)
    assert np.array_equal(sb[~finite], ref_sb[~finite]), "non-finite groups differ"
    tol = rtol * np.abs(y) + rtol * np.abs(y[np.isfinite(y)]).max(initial=0.0)
    lo, hi = y - tol, y + tol
    mag_lo = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    mag_hi = np.maximum(np.abs(lo), np.abs(hi))
    shape_g = yg.shape
    c = F32(F32(scale_scale) * F32(global_scale))
    gs = F32(global_scale)
    with np.errstate(all="ignore"):
        a_lo = np.nextafter(mag_lo.reshape(shape_g).max(-1).astype(F32), F32(0))
        a_hi = np.nextafter(mag_hi.reshape(shape_g).max(-1).astype(F32), F32(np.inf))
        s_lo = G.encode_scale((a_lo / c).astype(F32), scale_dtype).astype(np.int64)
        s_hi = G.encode_scale((a_hi / c).astype(F32), scale_dtype).astype(np.int64)
    bad_s = (sb != ref_sb) & finite
    unexplained = bad_s & ~((s_lo <= sb) & (sb <= s_hi))
    assert not unexplained.any(), (f"scale bytes {sb[unexplained][:4]} vs golden "
                                   f"{ref_sb[unexplained][:4]} outside the tolerance")
    # codes: the rounding of the interval's ends by the implementation's own divisor p
    with np.errstate(all="ignore"):
        p = (G.decode_scale(sb, scale_dtype) * gs).astype(np.float64)[..., None]
        q_lo = np.nextafter((lo.reshape(shape_g) / p).astype(F32), F32(-np.inf))
        q_hi = np.nextafter((hi.reshape(shape_g) / p).astype(F32), F32(np.inf))
    r_lo = _E2M1_RANK[G.e2m1_encode(q_lo, rounding)].reshape(codes.shape)
    r_hi = _E2M1_RANK[G.e2m1_encode(q_hi, rounding)].reshape(codes.shape)
    fin_el = np.repeat(finite, group_size, axis=-1)
    r = _E2M1_RANK[codes]
    bad_c = (codes != ref_codes) & fin_el
    unexplained = bad_c & ~((r_lo <= r) & (r <= r_hi))
    assert not unexplained.any(), (f"{unexplained.sum()} codes outside the tolerance; first "
                                   f"at {np.argwhere(unexplained)[:3].tolist()}")
    assert np.array_equal(codes[~fin_el], ref_codes[~fin_el]), "non-finite groups differ"
    near = (r_lo != r_hi) & fin_el
    n_c, n_s = int(bad_c.sum()), int(bad_s.sum())
    assert n_c <= max(1, max_code_fraction * codes.size), (n_c, codes.size)
    assert n_s <= max(1, max_scale_fraction * sb.size), (n_s, sb.size)
    return n_c, n_s, int(near.sum())


def fp4_near_threshold_rows(transform, rows, K, *, group_size, scale_dtype, scale_scale,
                            global_scale, seed=0, margin=1.5, rtol=1e-5, **_):
    """float32 (rows, K) whose golden block transform puts each group's maximum
    ``A`` on a stable scale byte and every other element ``margin`` times SPEC
    9.7's tolerance away from an e2m1 rounding boundary (``m * p``, either side):
    outside the tolerance, so their codes must equal golden's, while a transform
    off by a few tolerances flips some. ``transform``: orthogonal blocks (x is
    solved for as ``T^T y``)."""
    F32 = np.float32
    G = golden.fp4
    r = np.random.default_rng(seed)
    c = float(F32(F32(scale_scale) * F32(global_scale)))
    mids = np.array([.25, .75, 1.25, 1.75, 2.5, 3.5, 5.0])
    # scale = A / c away from the scale encoder's boundaries, A / p away from e2m1's
    for target in np.linspace(1.0, 2.0, 201):
        byte = G.encode_scale(np.array([target * (1 - 1e-3), target, target * (1 + 1e-3)], F32),
                              scale_dtype)
        p = float(F32(G.decode_scale(byte[1], scale_dtype) * F32(global_scale)))
        A = target * c
        if byte[0] == byte[2] and np.abs(A / p - mids).min() > 0.02 * A / p:
            break
    y = np.empty((rows, K // group_size, group_size))
    m = r.choice(mids[mids * p < A], y.shape)
    tol = rtol * m * p + rtol * A
    y[...] = r.choice([-1, 1], y.shape) * (m * p + r.choice([-1, 1], y.shape) * margin * tol)
    y[..., 0] = A * r.choice([-1, 1], y.shape[:-1])
    y = y.reshape(rows, K)
    t = np.asarray(transform, np.float64)
    g = t.shape[-1]
    tb = np.broadcast_to(t, (K // g, g, g))
    x = np.einsum("rci,cij->rcj", y.reshape(rows, K // g, g), tb)      # T^T y per block
    return x.reshape(rows, K).astype(F32)


# ---- fp4: crafted floats and group makers (golden.fp4 values, SPEC.md section 9) ------------

BYTES = np.arange(256, dtype=np.uint8)
MIDS = np.array([.25, .75, 1.25, 1.75, 2.5, 3.5, 5], F32)


def _mids(values):
    """Exact midpoints (float32) of consecutive distinct finite non-negative values."""
    v = np.unique(np.abs(values[np.isfinite(values)]).astype(np.float64))
    m = (v[:-1] + v[1:]) / 2
    assert np.array_equal(m.astype(F32).astype(np.float64), m)      # exactly representable
    return m.astype(F32)


def crafted_floats(n_random=20000, seed=0):
    """Every e2m1/e4m3/e8m0 value, exact midpoints between neighbours, all of
    them +-1 ulp, both signs, float32 subnormals, huge/tiny, specials and random bits."""
    e4 = G.e4m3_decode(BYTES)
    e8 = G.e8m0_decode(BYTES)
    e2 = G.E2M1_VALUES
    base = np.concatenate([e4, e8, e2, _mids(e4), _mids(e8), _mids(e2), MIDS])
    base = base[np.isfinite(base)]
    with np.errstate(all="ignore"):
        near = np.concatenate([base, np.nextafter(base, F32(np.inf)),
                               np.nextafter(base, F32(-np.inf))])
    specials = np.array([0, np.inf, np.nan, 1e38, 3e38, np.finfo(F32).max, 1e-40, 1e-45,
                         np.finfo(F32).tiny, np.finfo(F32).smallest_subnormal, 448, 464, 480, 6,
                         7, 1e-3, 2.0 ** -10, 3 * 2.0 ** -11, 2.0 ** -127 * 1.25], F32)
    r = np.random.default_rng(seed)
    rnd = r.integers(0, 2 ** 32, n_random, dtype=np.uint64).astype(np.uint32).view(F32)
    sub = r.integers(1, 1 << 23, 2000, dtype=np.uint32).view(F32)        # float32 subnormals
    out = np.concatenate([near, specials, rnd, sub]).astype(F32)
    return np.concatenate([out, -out])


FP4_KINDS = ("normal", "ties", "ties", "grid", "zeros", "nonfinite", "huge", "tiny", "e4m3_sub",
             "single", "wide")
TIE_VALUES = np.concatenate([G.E2M1_VALUES, MIDS])


def fp4_group(kind, n, r, ss, gs, scale_dtype):
    """One quantization group of ``n`` values of a kind from ``FP4_KINDS``."""
    if kind == "normal":
        return r.standard_normal(n) * 10.0 ** r.uniform(-4, 4)
    if kind == "grid":      # multiples of grid values and midpoints; amax 6 * 2^j
        v = r.choice(TIE_VALUES, n) * r.choice([-1, 1], n)
        v[r.integers(n)] = 6 * r.choice([-1, 1])
        return v * 2.0 ** r.integers(-12, 13)
    if kind == "ties":      # v * p for the group's own p = scale_deq * global_scale: x / p == v
        amax = F32(abs(r.standard_normal()) * 10.0 ** r.uniform(-3, 3) + 1e-3)
        with np.errstate(all="ignore"):
            byte = G.encode_scale(F32(amax / F32(F32(ss) * F32(gs))), scale_dtype)
            p = F32(G.decode_scale(byte, scale_dtype) * F32(gs))
            v = (r.choice(TIE_VALUES, n) * r.choice([-1, 1], n) * p).astype(F32)
        v = np.where(np.abs(v) <= amax, v, 0)
        v[r.integers(n)] = amax
        return v
    if kind == "zeros":
        return np.where(r.random(n) < 0.5, -0.0, 0.0)
    if kind == "nonfinite":
        v = r.standard_normal(n)
        v[r.integers(n, size=r.integers(1, 3))] = r.choice([np.nan, np.inf, -np.inf])
        return v
    if kind == "huge":
        return r.uniform(-3.4, 3.4, n) * 1e38
    if kind == "tiny":      # float32 subnormals
        return r.standard_normal(n) * r.choice([1e-40, 1e-43, 1e-38])
    if kind == "e4m3_sub":  # scale lands among e4m3 subnormals
        return r.standard_normal(n) * float(F32(ss) * F32(gs)) * 2.0 ** -r.integers(7, 12)
    if kind == "single":
        v = np.zeros(n)
        v[r.integers(n)] = r.standard_normal() * 10.0 ** r.uniform(-3, 3)
        return v
    return r.choice([-1, 1], n) * 2.0 ** r.uniform(-140, 127, n)       # wide


def hadamard(g: int) -> np.ndarray:
    """The orthonormal g x g Hadamard matrix (g a power of two), float32."""
    h = np.ones((1, 1))
    while h.shape[0] < g:
        h = np.block([[h, h], [h, -h]])
    return (h / np.sqrt(g)).astype(F32)


# ---- the package's import graph (tests/test_layout.py, tests/sc/test_layout.py) ----------

def package_modules(pkg: Path = PKG):
    """(dotted name, path) of every module under ``pkg``."""
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _resolve(mod: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def module_imports(mod: str, path: Path, top_level_only: bool):
    """(node, imported module, imported name or None) of each import in a module."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            target = _resolve(mod, path, node)
            for alias in node.names:
                yield node, target, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, None


def project_graph(pkg: Path = PKG):
    """module -> the set of modules of the same package it imports."""
    mods = dict(package_modules(pkg))
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        for _, target, name in module_imports(mod, path, top_level_only=False):
            for cand in ((f"{target}.{name}" if name else None), target):
                if cand in mods and cand != mod:
                    graph[mod].add(cand)
                    break
    return graph


# ---- subnormal inputs and scales (SPEC.md section 7.8) ---------------------------------

SUBNORMAL_KINDS = ("mixed", "rows", "all", "tiny", "huge_and_sub", "signed_zero")
SCALE_KINDS = ("one_sub", "many_sub", "all_sub", "tiny_normal", "huge", "plain")


def subnormal(r, shape):
    """Random float32 subnormals of both signs (mantissa 1 .. 2**23 - 1)."""
    bits = r.integers(1, 2 ** 23, shape).astype(np.uint32)
    bits |= (r.random(shape) < 0.5).astype(np.uint32) << np.uint32(31)
    return bits.view(np.float32)


def subnormal_values(shape, kind: str, seed: int) -> np.ndarray:
    """float32 values with subnormals mixed in as ``kind`` says: single elements
    (mixed), whole rows (rows), everything (all), next to the smallest normals
    (tiny), beside huge values (huge_and_sub), or with signed zeros."""
    r = np.random.default_rng(seed)
    scale = np.float32(10.0 ** r.uniform(-4, 2))
    x = (r.standard_normal(shape) * scale).astype(np.float32)
    sub = subnormal(r, shape)
    if kind == "mixed":
        x = np.where(r.random(shape) < 0.3, sub, x)
    elif kind == "rows":
        rows = r.random(shape[-2]) < 0.5
        x[..., rows, :] = sub[..., rows, :]
        x = np.where(r.random(shape) < 0.2, sub, x)
    elif kind == "all":
        x = sub
    elif kind == "tiny":
        tiny = (r.uniform(1, 64, shape) * np.float32(2.0 ** -126)).astype(np.float32)
        x = np.where(r.random(shape) < 0.5, sub, tiny * np.sign(r.standard_normal(shape)))
    elif kind == "huge_and_sub":
        x = np.where(r.random(shape) < 0.4, sub, (x * np.float32(1e30)).astype(np.float32))
    elif kind == "signed_zero":
        z = np.where(r.random(shape) < 0.5, np.float32(0), np.float32(-0.0))
        x = np.where(r.random(shape) < 0.3, sub, np.where(r.random(shape) < 0.3, z, x))
    return np.asarray(x, np.float32)


def subnormal_scales(D: int, kind: str, seed: int) -> np.ndarray:
    """Positive smooth scales ``(D,)`` with subnormal or extreme entries."""
    r = np.random.default_rng(seed)
    s = (r.random(D) * 4 + 0.25).astype(np.float32)
    sub = np.abs(subnormal(r, (D,)))
    if kind == "one_sub":
        s[r.integers(D)] = sub[0]
    elif kind == "many_sub":
        s = np.where(r.random(D) < 0.5, sub, s)
    elif kind == "all_sub":
        s = sub
    elif kind == "tiny_normal":          # a / s overflows or grows large
        s = np.where(r.random(D) < 0.5, np.float32(2.0 ** -126) * r.uniform(1, 2 ** 20, D), s)
    elif kind == "huge":                 # a / s can be subnormal, b * s overflow
        s = np.where(r.random(D) < 0.5, np.float32(1e30) * r.uniform(0.1, 300, D), s)
    return np.asarray(s, np.float32)


@st.composite
def subnormal_sc_cases(draw, small=False):
    """One sc_matmul call ``(a, b, kwargs)`` with subnormal operands and/or smooth
    scales: every granularity, mode and rank, sc_prec up to 12 (11 and 12
    often) with long streams, D x L kept within a CPU budget."""
    rank = draw(st.sampled_from([2, 3]))
    gran = draw(st.sampled_from(["per_tensor", "per_row", "per_head"] if rank == 3
                                else ["per_tensor", "per_row"]))
    mode = "bipolar" if gran == "per_head" else draw(st.sampled_from(["bipolar", "unipolar"]))
    p = draw(st.sampled_from([3, 6, 8, 11, 11, 12, 12]))
    B = 2 ** p
    N, M = draw(st.integers(1, 3 if small else 6)), draw(st.integers(1, 3 if small else 5))
    G = draw(st.sampled_from([None, 1, 37, 64])) if p >= 11 else draw(
        st.one_of(st.none(), st.integers(1, B)))
    # tables (and golden's work) grow with D * L * (G + 1): at most 2**21 entries
    L = draw(st.integers(1, min(B, (1 << 21) // ((G or B) + 1))))
    D = draw(st.integers(1, max(1, min(12 if small else 48, (1 << 21) // (L * ((G or B) + 1))))))
    chunk_d = 0
    if gran == "per_row" and mode == "bipolar" and rank == 2 and draw(st.booleans()):
        chunk_d = draw(st.integers(1, D + 1))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    shape = lambda R: (R, D) if rank == 2 else (draw(st.integers(1, 2)), R, D)
    sa = shape(N)
    sb = (sa[0], M, D) if rank == 3 else (M, D)
    a = subnormal_values(sa, draw(st.sampled_from(SUBNORMAL_KINDS)), seed)
    b = subnormal_values(sb, draw(st.sampled_from(SUBNORMAL_KINDS)), seed + 1)
    smooth = None
    if draw(st.integers(0, 3)) > 0:
        kind = draw(st.sampled_from(SCALE_KINDS + ("one_sub", "many_sub")))
        smooth = subnormal_scales(D, kind, seed + 2)
    kwargs = dict(granularity=gran, mode=mode, sc_prec=p, stoc_len=L, rng_levels=G,
                  chunk_d=chunk_d, group_a=draw(st.integers(1, N + 1)),
                  group_b=draw(st.integers(1, M + 1)), smooth_scales=smooth,
                  scramble=draw(st.sampled_from(["bitrev", "off"])))
    return a, b, kwargs


# ---- a small two-block linen model for the mixed-precision tests ------------------------

class ResidualMLP(nn.Module):
    """``x + fc2(relu(fc1(x)))``, features 6 -> 8 -> 6."""
    @nn.compact
    def __call__(self, x):
        return x + nn.Dense(6, name="fc2")(nn.relu(nn.Dense(8, name="fc1")(x)))


class TwoBlockNet(nn.Module):
    """Two ``ResidualMLP`` blocks named ``layer_0`` and ``layer_1``."""
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = ResidualMLP(name=f"layer_{i}")(x)
        return x
