"""Validation (`sapiens_edge.validation`): parity of an exported artifact against the PyTorch
reference, in tensor and task terms, with pass/fail thresholds per recipe.

`validate(artifact_dir, weights=..., images=..., report=...) -> ValidationReport`. The metrics and
the report are torch-free; `validate()` imports torch when it runs the reference.
"""

from __future__ import annotations

from . import metrics
from .report import MetricResult, ValidationReport
from .validate import resolve_thresholds, validate

__all__ = ["MetricResult", "ValidationReport", "metrics", "resolve_thresholds", "validate"]
