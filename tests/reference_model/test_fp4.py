"""golden.fp4 (SPEC.md section 9): formats vs ml_dtypes, rounding modes, quantizer cases."""
import ml_dtypes
import numpy as np
import pytest

from golden import fp4 as G
from tests.helpers import BYTES, MIDS, crafted_floats

F32 = np.float32


def _same(a, b):
    """float32 arrays equal bit for bit, NaN positions equal."""
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    na, nb = np.isnan(a), np.isnan(b)
    return np.array_equal(na, nb) and np.array_equal(a[~na].view(np.uint32),
                                                     b[~nb].view(np.uint32))


X = crafted_floats()


# ---- decoders: every code equals ml_dtypes ------------------------------------------

def test_e2m1_decode_all_codes():
    codes = np.arange(16, dtype=np.uint8)
    assert _same(G.e2m1_decode(codes), codes.view(ml_dtypes.float4_e2m1fn).astype(F32))
    assert G.e2m1_decode(np.uint8(8)).view(np.uint32) == 0x80000000          # -0


@pytest.mark.parametrize("dec,mdt", [(G.e8m0_decode, ml_dtypes.float8_e8m0fnu),
                                     (G.e4m3_decode, ml_dtypes.float8_e4m3fn)])
def test_scale_decode_all_bytes(dec, mdt):
    assert _same(dec(BYTES), BYTES.view(mdt).astype(F32))


def test_decode_nan_positions():
    assert np.flatnonzero(np.isnan(G.e8m0_decode(BYTES))).tolist() == [0xFF]
    assert np.flatnonzero(np.isnan(G.e4m3_decode(BYTES))).tolist() == [0x7F, 0xFF]
    assert G.e8m0_decode(np.uint8(0)) == F32(2.0 ** -127)                 # a float32 subnormal
    assert G.e4m3_decode(np.uint8(0x7E)) == 448 and G.e4m3_decode(np.uint8(1)) == 2.0 ** -9


# ---- encoders vs ml_dtypes where the rounding is the same ---------------------------

def test_e4m3_encode_matches_ml_dtypes():
    ok = ~np.isnan(X)
    ref = np.clip(X[ok], -448, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    assert np.array_equal(G.e4m3_encode(X[ok]), ref)
    nan = G.e4m3_encode(X[~ok])
    assert np.all(nan & 0x7F == 0x7F)


def test_e4m3_encode_hand_cases():
    x = np.array([464, 465, 1e9, np.inf, -np.inf, 2.0 ** -10, 3 * 2.0 ** -10, 2.0 ** -10 * 1.0001,
                  -0.0, 1e-45, 2.0 ** -4 * 1.0625, 2.0 ** -4 * 1.1875, 2.0 ** -6 * 0.9375], F32)
    # 464 is the tie 448|480: even -> 448; 465.. and Inf clamp to 448 (no NaN by overflow);
    # 2^-10 = half the smallest subnormal: tie -> 0; 3*2^-10 = 1.5 subnormal units: tie -> 2;
    # 2^-4 * (1 + 1/16), (1 + 3/16): mantissa ties -> even m = 0, 2; 2^-6 * 15/16: 7.5 units -> 8
    assert G.e4m3_encode(x).tolist() == [0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0, 2, 1, 0x80, 0, 0x18,
                                         0x1A, 0x08]


def test_e2m1_even_matches_ml_dtypes():
    ok = ~np.isnan(X)
    assert np.array_equal(G.e2m1_encode(X[ok], "even"),
                          X[ok].astype(ml_dtypes.float4_e2m1fn).view(np.uint8))
    assert np.all(G.e2m1_encode(X[~ok], "even") == 7)          # NaN -> 7 (ml_dtypes gives -0)


def test_e8m0_encode_matches_ml_dtypes_on_normal_floats():
    # ml_dtypes also rounds the mantissa half away from zero; compare on positive
    # normal float32 (and Inf) after SPEC's clamp
    x = X[(X >= np.finfo(F32).tiny)]
    ref = np.clip(x, F32(2.0 ** -127), F32(2.0 ** 127)).astype(ml_dtypes.float8_e8m0fnu)
    assert np.array_equal(G.e8m0_encode(x), ref.view(np.uint8))


def test_e8m0_encode_hand_cases():
    lo = 2.0 ** -127
    x = np.array([1.5, 3.0, 0.75, 1.4999999, 1.5000001, 2.0 ** 127 * 1.5, np.inf,
                  np.finfo(F32).max, lo * 1.5, lo * 1.4999, lo * 1.25, lo, 1e-45, 0.0, -0.0, -1.0,
                  -np.inf, np.nan, 2.0 ** -126 * 1.5, 2.0 ** -126 * 1.4999999], F32)
    # ties (mantissa 1.5) go away from zero; [2^-127, 2^127] clamp first; below 2^-126 the
    # float32 is subnormal and rounds to 2^-127 (byte 0) unless >= 1.5 * 2^-127
    # (ml_dtypes 0.6 sends every value in (2^-127, 2^-126) to byte 1: SPEC says nearest)
    assert G.e8m0_encode(x).tolist() == [128, 129, 127, 127, 128, 254, 254, 254, 1, 0, 0, 0, 0,
                                         0, 0, 0, 0, 255, 2, 1]


# ---- e2m1 rounding modes ------------------------------------------------------------

def test_e2m1_tie_modes_by_rule():
    lo = np.arange(7)                              # midpoint i lies between codes i and i+1
    for sign in (0, 8):
        x = MIDS if sign == 0 else -MIDS
        even = np.where(lo % 2 == 1, lo + 1, lo) | sign
        toward_zero = lo | sign
        away = (lo + 1) | sign
        assert G.e2m1_encode(x, "even").tolist() == even.tolist()
        assert G.e2m1_encode(x, "zero").tolist() == toward_zero.tolist()
        assert G.e2m1_encode(x, "down").tolist() == (toward_zero if sign == 0 else away).tolist()
        assert G.e2m1_encode(x, "up").tolist() == (away if sign == 0 else toward_zero).tolist()


def test_e2m1_tie_modes_hand_worked():
    x = np.array([0.25, -0.25, 0.75, -0.75, 5, -5, 2.5, -3.5], F32)
    assert G.e2m1_encode(x, "even").tolist() == [0, 8, 2, 10, 6, 14, 4, 14]
    assert G.e2m1_encode(x, "zero").tolist() == [0, 8, 1, 9, 6, 14, 4, 13]
    assert G.e2m1_encode(x, "down").tolist() == [0, 9, 1, 10, 6, 15, 4, 14]
    assert G.e2m1_encode(x, "up").tolist() == [1, 8, 2, 9, 7, 14, 5, 13]


def test_e2m1_modes_agree_off_ties():
    off = X[~np.isin(np.abs(X), MIDS)]
    even = G.e2m1_encode(off, "even")
    for mode in ("zero", "down", "up"):
        assert np.array_equal(G.e2m1_encode(off, mode), even)


def test_e2m1_specials():
    x = np.array([-0.0, -1e-30, 1e-45, np.nan, -np.nan, np.inf, -np.inf, 7, -6.0000005, 5.9999995],
                 F32)
    for mode in G.ROUNDINGS:
        assert G.e2m1_encode(x, mode).tolist() == [8, 8, 0, 7, 7, 7, 15, 7, 15, 7]


def test_pack_layout():
    codes = np.array([[1, 2, 3, 4, 15, 0]], np.uint8)
    packed = G.pack(codes)
    assert packed.tolist() == [[0x21, 0x43, 0x0F]]
    assert np.array_equal(G.unpack(packed), codes)


# ---- quantize / dequantize hand cases -------------------------------------------------

def _q(x, **kw):
    return G.quantize(np.asarray(x, F32), **kw)


NV = G.PRESETS["nvfp4"]
MX = G.PRESETS["mxfp4"]


def test_nvfp4_exact_values():
    x = np.array([6, 3, -1.5, 0.5, 0.25, 0.75, -0.0, 0, 1, -2, 4, -6, 5, 1.25, -1.75, 2.5], F32)
    q = _q(x, **NV)
    assert q["scales"].tolist() == [0x38]                       # amax 6 / 6 = 1.0
    codes = G.unpack(q["codes"])
    assert codes.tolist() == [7, 5, 11, 1, 0, 2, 8, 0, 2, 12, 6, 15, 6, 2, 12, 4]
    deq = G.dequantize(q["codes"], q["scales"], scale_dtype="e4m3", global_scale=1.0)
    assert _same(deq, G.e2m1_decode(codes))


def test_mxfp4_hand_worked():
    # prod = 4 * f32(1/3) = 1.3333334; 1 / prod = 0.74999998 rounds to 0.75 in float32, the
    # e8m0 tie 1.5 * 2^-1 -> away from zero: 2^0 (byte 127); p = f32(1/3): 1/p rounds to 3
    # (code 5), -0.25/p to -0.75 (tie -> even: -1, code 10), 0.5/p to 1.5 (code 3)
    x = np.zeros(32, F32)
    x[:4] = 1, -0.25, 0.5, 2.0 ** -4
    q = _q(x, **MX)
    assert q["scales"].tolist() == [127]
    assert G.unpack(q["codes"])[:4].tolist() == [5, 10, 3, 0]
    q = _q(x, **{**MX, "rounding": "up"})
    assert G.unpack(q["codes"])[:4].tolist() == [5, 9, 3, 0]


def test_zero_groups():
    z = np.array([0.0, -0.0] * 8, F32)
    q = _q(z, **NV)                                             # e4m3 scale 0: 0/0 = NaN -> 7
    assert q["scales"].tolist() == [0] and np.all(G.unpack(q["codes"]) == 7)
    d = G.dequantize(q["codes"], q["scales"], scale_dtype="e4m3", global_scale=1.0)
    assert np.all(d.view(np.uint32) == 0)                       # 6 * 0 = +0
    q = _q(z, group_size=16, scale_dtype="e8m0", scale_scale=4.0, global_scale=1.0)
    assert q["scales"].tolist() == [0]                          # 0 clamps to 2^-127
    assert G.unpack(q["codes"]).tolist() == [0, 8] * 8


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4"])
def test_nonfinite_group_only(bad, preset):
    kw = G.PRESETS[preset]
    r = np.random.default_rng(1)
    x = r.standard_normal((2, 64)).astype(F32)
    y = x.copy()
    y[1, 5] = bad
    qx, qy = _q(x, **kw), _q(y, **kw)
    G_ = kw["group_size"]
    nan_byte = 0xFF if kw["scale_dtype"] == "e8m0" else 0x7F
    assert qy["scales"][1, 5 // G_] == nan_byte
    sel = np.ones(qy["scales"].shape, bool)
    sel[1, 5 // G_] = False
    assert np.array_equal(qy["scales"][sel], qx["scales"][sel])
    cy = G.unpack(qy["codes"])
    grp = slice(5 // G_ * G_, 5 // G_ * G_ + G_)
    assert np.all(cy[1, grp] == 7)
    d = G.dequantize(qy["codes"], qy["scales"], scale_dtype=kw["scale_dtype"],
                     global_scale=kw["global_scale"])
    assert np.all(np.isnan(d[1, grp])) and np.isfinite(d[0]).all()


@pytest.mark.parametrize("scale_dtype,byte", [("e8m0", 254), ("e4m3", 0x7E)])
def test_scale_overflow_clamps(scale_dtype, byte):
    x = np.full(8, 3e38, F32)
    x[1] = -1.0
    q = _q(x, group_size=8, scale_dtype=scale_dtype, scale_scale=1.0, global_scale=0.25)
    assert q["scales"].tolist() == [byte]                      # 3e38 / 0.25 = Inf -> max scale
    assert G.unpack(q["codes"])[0] == 7                          # saturates at 6


def test_e4m3_subnormal_scale():
    x = np.array([6, 3, 1, 0.5] * 4, F32) * F32(2.0 ** -8)
    q = _q(x, **NV)
    assert q["scales"].tolist() == [0x02]                       # 2^-8 = 2 * 2^-9
    assert G.unpack(q["codes"]).tolist() == [7, 5, 2, 1] * 4


def test_roundtrip_representable():
    r = np.random.default_rng(3)
    codes = r.integers(0, 16, (5, 64)).astype(np.uint8)
    codes[:, ::16] = 7                                            # amax 6 per group of 16
    x = G.e2m1_decode(codes) * F32(2.0 ** -3)
    q = _q(x, **NV)
    assert np.array_equal(G.unpack(q["codes"]), codes)
    assert _same(G.dequantize(q["codes"], q["scales"], scale_dtype="e4m3", global_scale=1.0), x)


def test_leading_dims_and_dtypes():
    r = np.random.default_rng(4)
    x = r.standard_normal((2, 3, 32)).astype(F32)
    q = _q(x, **MX)
    assert q["codes"].shape == (2, 3, 16) and q["scales"].shape == (2, 3, 1)
    assert q["codes"].dtype == np.uint8 and q["scales"].dtype == np.uint8
    flat = _q(x.reshape(6, 32), **MX)
    assert np.array_equal(flat["codes"].reshape(2, 3, 16), q["codes"])
    q16 = _q(x.astype(np.float16), **MX)
    assert np.array_equal(q16["codes"], _q(x.astype(np.float16).astype(F32), **MX)["codes"])


# ---- transforms and the matmul reference ---------------------------------------------

def test_block_transform():
    r = np.random.default_rng(5)
    x = r.standard_normal((3, 64)).astype(F32)
    assert _same(G.block_transform(x, np.eye(16, dtype=F32)), x)
    assert G.block_transform(x, None) is not None
    t = r.standard_normal((4, 16, 16)).astype(F32)
    y = G.block_transform(x, t)
    ref = np.concatenate([x[:, 16 * c:16 * c + 16].astype(np.float64) @ t[c].T.astype(np.float64)
                          for c in range(4)], axis=1)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    shared = G.block_transform(x, t[0])
    assert _same(shared, G.block_transform(x, np.broadcast_to(t[0], (4, 16, 16))))
    q = G.quantize(x, **NV, transform=t)
    assert np.array_equal(q["codes"], G.quantize(y, **NV)["codes"])


def test_matmul_reference():
    r = np.random.default_rng(6)
    a = G.quantize(r.standard_normal((2, 3, 64)).astype(F32), **MX)
    w = G.quantize(r.standard_normal((5, 64)).astype(F32), **NV)
    y = G.matmul_reference(a["codes"], a["scales"], a["global_scale"], w["codes"], w["scales"],
                           w["global_scale"], scale_dtype_a="e8m0", scale_dtype_w="e4m3")
    da = G.dequantize(a["codes"], a["scales"], scale_dtype="e8m0", global_scale=a["global_scale"])
    dw = G.dequantize(w["codes"], w["scales"], scale_dtype="e4m3", global_scale=w["global_scale"])
    assert y.shape == (2, 3, 5) and y.dtype == np.float64
    np.testing.assert_allclose(y, da.astype(np.float64) @ dw.T.astype(np.float64), rtol=1e-6)


def test_weight_only_reference():
    """Hand-worked: x = [1, 2], weight codes 0.5 and -6 with one e8m0 scale 2,
    global scale 0.5 -> 0.5 * (1 * 1 + 2 * -12) = -11.5. And a float activation
    holding exactly the values of fp4 codes gives matmul_reference's product."""
    y = G.weight_only_reference(np.array([[1.0, 2.0]], F32), np.array([[0xF1]], np.uint8),
                                np.array([[128]], np.uint8), 0.5, scale_dtype_w="e8m0")
    assert y.dtype == np.float64 and y.tolist() == [[-11.5]]
    r = np.random.default_rng(7)
    a = G.quantize(r.standard_normal((2, 3, 64)).astype(F32), **MX)
    w = G.quantize(r.standard_normal((5, 64)).astype(F32), **NV)
    x = G.dequantize(a["codes"], a["scales"], scale_dtype="e8m0", global_scale=1.0)
    ref = G.matmul_reference(a["codes"], a["scales"], 1.0, w["codes"], w["scales"],
                             w["global_scale"], scale_dtype_a="e8m0", scale_dtype_w="e4m3")
    got = G.weight_only_reference(x, w["codes"], w["scales"], w["global_scale"],
                                  scale_dtype_w="e4m3")
    assert got.shape == (2, 3, 5) and np.array_equal(got, ref)
    with pytest.raises(ValueError, match="x must be"):
        G.weight_only_reference(x[..., :32], w["codes"], w["scales"], 1.0, scale_dtype_w="e4m3")
    with pytest.raises(ValueError, match="x must be a float"):
        G.weight_only_reference(x.astype(np.int32), w["codes"], w["scales"], 1.0,
                                scale_dtype_w="e4m3")


# ---- validation -------------------------------------------------------------------------

GOOD = dict(group_size=16, scale_dtype="e4m3", scale_scale=6.0, global_scale=1.0)
XG = np.ones((2, 32), F32)
BAD = [
    (XG, dict(group_size=5), "group_size"),
    (XG, dict(group_size=0), "group_size"),
    (XG, dict(group_size=16.0), "group_size"),
    (np.ones((2, 31), F32), dict(group_size=1), "even"),
    (np.ones((), F32), {}, "dimension"),
    (XG, dict(scale_dtype="e5m2"), "scale_dtype"),
    (XG, dict(rounding="nearest"), "rounding"),
    (XG, dict(scale_scale=0.0), "scale_scale"),
    (XG, dict(scale_scale=np.inf), "scale_scale"),
    (XG, dict(global_scale=-1.0), "global_scale"),
    (XG, dict(global_scale=np.nan), "global_scale"),
    (XG, dict(global_scale=[1.0, 2.0]), "global_scale"),
    (XG, dict(scale_scale=1e-30, global_scale=1e-30), "scale_scale \\* global_scale"),
    (XG, dict(transform=np.eye(3, dtype=F32)), "transform"),
    (XG, dict(transform=np.ones((16, 8), F32)), "transform"),
    (XG, dict(transform=np.ones((3, 16, 16), F32)), "transform"),
]


@pytest.mark.parametrize("x,kw,match", BAD)
def test_validation(x, kw, match):
    with pytest.raises(ValueError, match=match):
        G.quantize(x, **{**GOOD, **kw})


def test_non_float_input():
    with pytest.raises(TypeError, match="x must be a float"):
        G.quantize(np.ones((2, 32), np.int32), **GOOD)
    with pytest.raises(TypeError, match="transform must be a float"):
        G.quantize(XG, **GOOD, transform=np.eye(16, dtype=np.int32))
