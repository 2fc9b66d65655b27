"""Mixed precision: per-row / per-weight-group stream lengths (``scmp_jax.mp``).

Configs (frozen, hashable), jit-friendly classifiers returning int32 level
indices, and host-side cost reports / loggers as explicit objects.
"""
from .classify import (adaptive_classify_rows, classify_groups_by_range,
                       classify_rows_by_boundaries, classify_rows_by_metric, group_ranges,
                       quantile_counts, row_metric)
from .config import (METRICS, AdaptiveMPConfig, FreeBoundaryMPConfig, FrozenMap, MPConfig,
                     RangeMPConfig, RowAssignment, bucket_index, parse_bucket_key)
from .report import (AutoMPBudgetLogger, CycleBudget, MetricProfiler, MPDistributionLogger,
                     cycle_budget)
from .plan import COLLECTION, BlockReport, MPPlan, apply_compensation
# last: calibration drives scmp_jax.flax, which reads the modules above
from .block import BlockProgram
from .calibrate import calibrate

__all__ = [
    "MPConfig", "AdaptiveMPConfig", "FreeBoundaryMPConfig", "RangeMPConfig", "RowAssignment",
    "FrozenMap", "METRICS", "bucket_index", "parse_bucket_key",
    "classify_rows_by_metric", "adaptive_classify_rows", "classify_groups_by_range",
    "classify_rows_by_boundaries", "MPPlan", "BlockReport", "COLLECTION", "apply_compensation",
    "calibrate", "BlockProgram",
    "row_metric", "quantile_counts", "group_ranges",
    "CycleBudget", "cycle_budget", "MPDistributionLogger", "AutoMPBudgetLogger", "MetricProfiler",
]
