"""Flax integration (linen and nnx): fp4 ``QuantLinear`` layers, SC / fp4
``dot_general`` and einsum injection, an SC ``attention_fn``, and
``simulate(model, rules)`` to run an unmodified model's matmuls through the
simulated arithmetic."""
from .attention import sc_attention_fn
from .dot_general import fp4_dot_general, fp4_einsum, sc_dot_general, sc_einsum
from .intercept import FP4, SC, OpRecord, Report, Rule, simulate
from .linen import QuantLinear
from .nnx import NNXQuantLinear

__all__ = ["QuantLinear", "NNXQuantLinear", "sc_dot_general", "fp4_dot_general", "sc_einsum",
           "fp4_einsum", "sc_attention_fn", "simulate", "Rule", "SC", "FP4", "Report", "OpRecord"]
