"""Shared strategies and exact comparisons for the golden tests."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import golden

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
    import os

    import scmp_jax
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
