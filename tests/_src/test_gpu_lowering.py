"""Every Pallas kernel path lowers to Triton for the GPU, checked on the CPU.

``jax.jit(f).trace(...).lower(lowering_platforms=("cuda",))`` runs the Pallas
Triton lowering (jaxlib's Triton dialect) without a GPU. Interpret mode runs
kernel bodies that the GPU backend rejects (a bitcast of a compile-time
constant, value gathers, non-power-of-two blocks), so this catches them in CI before device time is
spent. It proves lowering only: numerics and runtime faults belong to the GPU
run of the kernel tests (``pytest -m gpu`` on the device machine).

Each case traces the public API as it runs on a GPU, inside
``scmp_jax._src.platform.gpu_lowering()``: implementation=None -> Pallas,
interpret off, dense counts where eligible, and the integer IEEE division
(as on every non-CPU backend). The lowered module must hold
at least the expected number of Triton kernel calls, so a path that silently
fell back to XLA fails.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scmp_jax
from scmp_jax import fp4
from scmp_jax._src.dispatch import resolve
from scmp_jax._src.platform import gpu_lowering
from scmp_jax.fp4.linear import dequant as LD
from scmp_jax.fp4.matmul import pallas as MP
from scmp_jax.fp4.matmul import tilings as T
from scmp_jax.fp4.quantize import pallas as QP
from scmp_jax.quant import api as quant_api

F32, BF16 = jnp.float32, jnp.bfloat16
_TRITON = re.compile(r"triton", re.IGNORECASE)


@pytest.fixture(autouse=True)
def as_on_gpu():
    with gpu_lowering():
        yield
    jax.clear_caches()          # nothing traced as-on-GPU is reused by later tests


def _kernels(fn, *args) -> int:
    """Number of Triton kernel calls in ``fn``'s module lowered for cuda."""
    text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    calls = [ln for ln in text.splitlines() if "custom_call" in ln and _TRITON.search(ln)]
    return len(calls)


def _arr(shape, dtype=F32, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


A, B = _arr((64, 256)), _arr((96, 256), seed=1)
A3, B3 = _arr((2, 64, 128)), _arr((2, 96, 128), seed=1)

SC_CASES = {
    # (fn, args, least): quantization kernels of a and b + the count kernel; dense
    # counts are an XLA (cuBLAS) matmul after the two quantization kernels
    "per_row gather": (lambda a, b: scmp_jax.sc_matmul(a, b, counts="gather"), (A, B), 3),
    "per_row dense": (lambda a, b: scmp_jax.sc_matmul(a, b, counts="dense"), (A, B), 2),
    "per_tensor L=64": (lambda a, b: scmp_jax.sc_matmul(a, b, "per_tensor", stoc_len=64),
                        (A, B), 3),
    "unipolar": (lambda a, b: scmp_jax.sc_matmul(a, b, mode="unipolar"), (A, B), 3),
    "chunk_d + groups": (lambda a, b: scmp_jax.sc_matmul(a, b, chunk_d=128, group_a=2),
                         (A, B), 3),
    "smoothquant": (lambda a, b, s: scmp_jax.sc_matmul(a, b, smooth_scales=s),
                    (A, B, jnp.abs(_arr((256,), seed=2)) + 0.5), 3),
    "per_head": (lambda a, b: scmp_jax.sc_matmul(a, b, "per_head"), (A3, B3), 3),
    "per_row 3D": (lambda a, b: scmp_jax.sc_matmul(a, b), (A3, B3), 3),
    "mixed lengths": (lambda a, b: scmp_jax.sc_matmul(
        a, b, row_stoc_len=jnp.full((64,), 64, jnp.int32), stoc_levels=(64,)), (A, B), 3),
    "quantize per_row": (lambda a: quant_api.quantize(a, "per_row", group=2), (A,), 1),
    "accumulate_act_scales": (lambda a: scmp_jax.accumulate_act_scales(a), (A,), 1),
}


@pytest.mark.parametrize("case", SC_CASES)
def test_sc_kernels_lower_for_gpu(case):
    fn, args, least = SC_CASES[case]
    assert _kernels(fn, *args) >= least


def _pallas():
    """The Pallas backend as the API resolves it while tracing (inside the
    fixture's ``gpu_lowering``: compiled for the GPU)."""
    return resolve("pallas", op="gpu lowering test")


X = _arr((16, 256), BF16, seed=3)
W = fp4.quantize(_arr((128, 256), seed=4), "mxfp4", implementation="xla")
T_SHARED = _arr((32, 32), seed=5)

FP4_CASES = {
    "quantize mxfp4 bf16": (lambda x: fp4.quantize(x, "mxfp4").codes, (X,), 1),
    "quantize nvfp4 f32": (lambda x: fp4.quantize(x, "nvfp4", rounding="up").codes,
                           (X.astype(F32),), 1),
    "quantize traced global scale": (lambda x, g: fp4.quantize(x, "mxfp4", global_scale=g).codes,
                                     (X, jnp.float32(0.5)), 1),
    "quantize shared transform": (lambda x, t: fp4.quantize(x, "mxfp4", transform=t).codes,
                                  (X, T_SHARED), 1),
    "quantize group 1": (lambda x: QP.quantize_fused(x, np.float32(6.0), np.float32(1.0),
                                                     group_size=1, scale_dtype="e4m3",
                                                     rounding=0, backend=_pallas())[0], (X,), 1),
    "quantize_dequant": (lambda x: LD.quantize_dequant(x, np.float32(4.0), np.float32(1 / 3),
                                                       group_size=32, scale_dtype="e8m0",
                                                       rounding=0, backend=_pallas()), (X,), 1),
}
for n in (1, 2, 8, 16):                      # gemv (in-kernel quantization), grouped fused
    FP4_CASES[f"quantized_matmul N={n}"] = (
        lambda x, w, n=n: fp4.quantized_matmul(x[:n], w, "mxfp4"), (X, W), 1)
FP4_CASES["quantized_matmul N=256 (dequant)"] = (
    lambda x, w: fp4.quantized_matmul(x, w, "mxfp4"), (_arr((256, 256), BF16), W), 2)
FP4_CASES["weight_only_matmul bf16"] = (lambda x, w: fp4.weight_only_matmul(x[:1], w), (X, W), 1)
FP4_CASES["weight_only_matmul f32 nvfp4"] = (
    lambda x, w: fp4.weight_only_matmul(x, w), (X.astype(F32), fp4.quantize(
        _arr((128, 256), seed=7), "nvfp4", implementation="xla")), 1)
for name, til in {"fused": T.FusedTiling(16, 64, 128), "gemv": T.GemvTiling(32, 256, split=2),
                  "dp4a": T.Dp4aTiling(32, 256, split=2), "dequant": T.DequantTiling()}.items():
    FP4_CASES[f"matmul {name}"] = (lambda x, w, t=til: MP.matmul(
        (lambda a: (a.codes, a.scale_bytes, a.global_scale, "e8m0"))(
            fp4.quantize(x[:1] if t.schedule in T.ROW_SCHEDULES else x, "mxfp4")),
        (w.codes, w.scale_bytes, w.global_scale, "e8m0"), backend=_pallas(), tiling=t),
        (_arr((16, 512), BF16), fp4.quantize(_arr((128, 512), seed=6), "mxfp4",
                                             implementation="xla")), 2)


@pytest.mark.parametrize("case", FP4_CASES)
def test_fp4_kernels_lower_for_gpu(case):
    fn, args, least = FP4_CASES[case]
    assert _kernels(fn, *args) >= least
