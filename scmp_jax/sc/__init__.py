"""Stochastic-computing enable-signal matmul."""
from .api import (DEFAULT_TABLE_CAP_BYTES, GRANULARITIES, MODES, InvalidDtypeError,
                  clear_caches, sc_matmul)
from .config import RNG, SNG, SCConfig, as_config
from .tables import OWEN_MODES

__all__ = ["sc_matmul", "clear_caches", "SCConfig", "RNG", "SNG", "as_config", "GRANULARITIES", "MODES",
           "OWEN_MODES", "InvalidDtypeError", "DEFAULT_TABLE_CAP_BYTES"]
