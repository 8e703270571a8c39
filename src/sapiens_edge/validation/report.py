"""Validation report: typed outcomes (Optimum-style), JSON + Markdown, atomic writes. Torch-free.

Outcomes:

* **fatal**: the artifact cannot be compared with the reference at all (output count, shape or
  dtype differ, or an output disagrees with the artifact's own manifest), an artifact output holds
  NaN or Inf, or no threshold applies (nothing would be checked). ``fatal`` holds the reason,
  ``passed`` is False.
* **tolerance misses**: every threshold of the recipe (or an override) becomes a ``MetricResult``
  with its value, limit and verdict; a named task metric that was not computed is a failing check
  whose ``reason`` says so. The report passes only if there is at least one check and all pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sapiens_edge.fileio import atomic_write_bytes, atomic_write_json, jsonable

from .metrics import UNITS

REPORT_SCHEMA = "sapiens-edge/validation-report"
REPORT_SCHEMA_VERSION = 1


def passes(value: float, limit: float, kind: str) -> bool:
    """``value >= limit`` for kind 'min', ``value <= limit`` for 'max'; NaN never passes."""
    if kind not in ("min", "max"):
        raise ValueError(f"kind must be 'min' or 'max', not {kind!r}")
    v = float(value)
    if math.isnan(v):
        return False
    return v >= limit if kind == "min" else v <= limit


@dataclass
class MetricResult:
    """One threshold check. ``value`` is the mean over the images, ``worst`` the worst image."""

    name: str  # metric name; tensor metrics carry the output: "cosine[logits]"
    value: float
    limit: float
    kind: str  # 'min' (value must be >= limit) or 'max' (value must be <= limit)
    passed: bool
    worst: float | None = None
    reason: str | None = None  # why it failed other than by its value (a metric that was not computed)

    @classmethod
    def check(cls, name: str, value: float, limit: float, kind: str, worst: float | None = None) -> MetricResult:
        return cls(name, float(value), float(limit), kind, passes(value, limit, kind),
                   None if worst is None else float(worst))

    @classmethod
    def missing(cls, name: str, limit: float, kind: str) -> MetricResult:
        """A failing check for a metric the thresholds name but the validation did not compute."""
        return cls(name, math.nan, float(limit), kind, False, None,
                   f"{name} was not computed: the thresholds name it but no {name} value came out of the "
                   f"task metrics (a renamed or dropped metric?)")

    @property
    def metric(self) -> str:
        """The bare metric name ("cosine" for "cosine[logits]")."""
        return self.name.split("[", 1)[0]

    def describe(self) -> str:
        op = ">=" if self.kind == "min" else "<="
        return f"{self.name} = {fmt(self.value)} (needs {op} {fmt(self.limit)})" + (
            f": {self.reason}" if self.reason else "")


@dataclass
class ValidationReport:
    artifact: str
    model: str
    recipe: str
    task: str
    backend: str
    images: list[str]
    tensor_metrics: dict[str, dict[str, dict[str, float]]]  # output -> metric -> {"mean", "worst"}
    task_metrics: dict[str, dict[str, float]]  # metric -> {"mean", "worst"}
    checks: list[MetricResult]
    fatal: str | None
    passed: bool
    seconds: float
    thresholds: dict[str, float] = field(default_factory=dict)  # the limits applied (<metric>_<min|max>)
    weights: dict[str, Any] = field(default_factory=dict)  # reference weights: path, sha256, random
    backend_info: dict[str, Any] = field(default_factory=dict)  # Predictor.describe()
    per_image: list[dict[str, Any]] = field(default_factory=list)  # image, tensor, task, seconds
    notes: list[str] = field(default_factory=list)  # warnings worth keeping with the result
    image_sha256: list[str] = field(default_factory=list)  # of each evaluated image, in `images` order
    calibration: dict[str, Any] = field(default_factory=dict)  # the artifact's, from its manifest (int8 only)
    created: str = ""

    @staticmethod
    def decide(checks: list[MetricResult], fatal: str | None) -> bool:
        """Passed: nothing fatal, at least one check (no check proves nothing) and every check passes."""
        return fatal is None and bool(checks) and all(c.passed for c in checks)

    @property
    def failed_checks(self) -> list[MetricResult]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        where = f"{self.model} / {self.recipe} on {len(self.images)} image(s)"
        if self.fatal is not None:
            return f"FATAL ({where}): {self.fatal}"
        if not self.checks:
            return f"FAILED ({where}): no metric was checked"
        failed = self.failed_checks
        if failed:
            return (f"FAILED ({where}): {len(failed)} of {len(self.checks)} checks out of limits: "
                    + "; ".join(c.describe() for c in failed))
        return f"PASSED ({where}): all {len(self.checks)} checks within limits"

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict[str, Any]:
        doc = {"schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION, **asdict(self),
               "summary": self.summary()}
        return jsonable(doc)

    def to_markdown(self) -> str:
        status = "FATAL" if self.fatal is not None else ("PASSED" if self.passed else "FAILED")
        lines = [f"# Validation: {self.model} ({self.recipe}) — {status}", "", f"**{self.summary()}**", "",
                 "| | |", "|---|---|",
                 f"| artifact | `{self.artifact}` |", f"| task | {self.task} |", f"| backend | {self.backend} |",
                 f"| reference | {_weights_line(self.weights)} |",
                 f"| images | {len(self.images)}: {_short_list(self.images)} |",
                 f"| calibration | {_calibration_line(self.calibration)} |",
                 f"| time | {self.seconds:.1f} s |", ""]
        if self.fatal is not None:
            lines += ["## Fatal", "", self.fatal, ""]
        if self.checks:
            lines += ["## Checks", "", "Value: mean over images; worst: the worst image.", "",
                      "| check | value | worst | limit | result |", "|---|---:|---:|---:|---|"]
            for c in self.checks:
                op = ">=" if c.kind == "min" else "<="
                verdict = "pass" if c.passed else "**FAIL**" + (f" ({c.reason})" if c.reason else "")
                lines.append(f"| {c.name} | {fmt(c.value)} | {fmt(c.worst)} | {op} {fmt(c.limit)} | {verdict} |")
            lines.append("")
        if self.tensor_metrics:
            lines += ["## Tensor metrics (raw outputs)", "", "| output | metric | mean | worst | units |",
                      "|---|---|---:|---:|---|"]
            for out, ms in self.tensor_metrics.items():
                for name, v in ms.items():
                    lines.append(f"| {out} | {name} | {fmt(v.get('mean'))} | {fmt(v.get('worst'))} | "
                                 f"{UNITS.get(name, '')} |")
            lines.append("")
        if self.task_metrics:
            lines += [f"## Task metrics ({self.task})", "", "| metric | mean | worst | units |", "|---|---:|---:|---|"]
            for name, v in self.task_metrics.items():
                lines.append(f"| {name} | {fmt(v.get('mean'))} | {fmt(v.get('worst'))} | {UNITS.get(name, '')} |")
            lines.append("")
        if self.image_sha256:
            lines += ["## Images evaluated", "", "| image | sha256 |", "|---|---|",
                      *[f"| `{Path(n).name}` | `{h}` |" for n, h in zip(self.images, self.image_sha256, strict=False)],
                      ""]
        if self.notes:
            lines += ["## Notes", "", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(lines)

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.md`` atomically (``foo.json`` -> also ``foo.md``;
        ``foo.md`` -> also ``foo.json``; any other name ``foo`` -> ``foo.json`` and ``foo.md``)."""
        json_path, md_path = report_paths(path)
        atomic_write_json(json_path, self.to_json())
        atomic_write_bytes(md_path, self.to_markdown().encode("utf-8"))
        return json_path, md_path


def report_paths(path: str | Path) -> tuple[Path, Path]:
    """(.json, .md) of a report path: `r.json` / `r.md` pair up; any other name gets both suffixes added
    (a dot in the name, as in `sapiens2-0.4b-seg`, is not a suffix to replace)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".md":
        return p.with_suffix(".json"), p
    if suffix == ".json":
        return p, p.with_suffix(".md")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".md")


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    v = float(v)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.6g}"


def _weights_line(w: dict[str, Any]) -> str:
    if not w:
        return "—"
    if w.get("random"):
        return f"PyTorch fp32, random initialisation (seed {w.get('seed')})"
    sha = w.get("sha256")
    return f"PyTorch fp32, `{w.get('path')}`" + (f" (sha256 {str(sha)[:16]}…)" if sha else "")


def _calibration_line(c: dict[str, Any]) -> str:
    if not c:
        return "none (not a calibrated recipe)"
    line = f"{c.get('count', '?')} image(s) from {c.get('source', '?')}"
    return line + (f"; {c['note']}" if c.get("note") else "")


def _short_list(items: list[str], n: int = 5) -> str:
    shown = ", ".join(f"`{Path(i).name}`" for i in items[:n])
    return shown + (f" … (+{len(items) - n})" if len(items) > n else "")
