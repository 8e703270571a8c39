"""Checks on a `bench` request made before anything loads: counts, devices, the backend, the
`baseline` (an artifact folder as passed, or a row name) and the input size every row runs at. A
mistake here costs the user nothing but a message (the CLI's exit 2), instead of a traceback after all the rounds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sapiens_edge.errors import OptionError, option

TORCH_ROW = "torch eager fp32"
TORCH_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class BaselineChoice:
    """The row ratios refer to, as the user named it: `by` is "folder" or "row"."""

    given: str
    by: str
    row: str | None = None  # the row's name (a folder's row is named once its manifest is read)
    folder: Path | None = None


def check_counts(runs: int | None, seconds: float | None, warmup: int, torch_device: str) -> None:
    if (runs is None) == (seconds is None):
        raise OptionError("Give exactly one of runs (timed rounds) or seconds (time budget for the rounds).")
    if runs is not None and runs < 1:
        raise OptionError(f"runs must be at least 1, not {runs}.")
    if seconds is not None and not seconds > 0:
        raise OptionError(f"seconds must be positive, not {seconds}.")
    if warmup < 1:
        raise OptionError(f"warmup must be at least 1 (the first run is timed on its own as first_s), not {warmup}.")
    if torch_device not in TORCH_DEVICES:
        raise OptionError(f"torch_device must be one of {', '.join(TORCH_DEVICES)}, not {torch_device!r}.")


def check_backend(backend: str | None, options: dict) -> None:
    """A backend named by the user exists and takes these options (the shared `threads` goes to those
    that take it)."""
    if backend is None:
        return
    from sapiens_edge.runtime.backends import backend_options

    takes = backend_options(backend)  # OptionError for an unknown backend
    unknown = sorted(k for k in options if k not in takes and k != "threads")
    if unknown:
        raise OptionError(f"The {backend} backend has no option(s) {', '.join(unknown)}; it takes: "
                          f"{', '.join(takes) or 'none'}.")


def planned_rows(artifacts: Sequence[str | Path], providers: Sequence[str], backend: str | None,
                 torch_row: str | None) -> list[tuple[str, Path | None]]:
    """(row name, folder) of every row the run will have, from a peek at each manifest (a folder
    whose manifest cannot be read is named by its folder, as its failed row will be)."""
    rows: list[tuple[str, Path | None]] = [(torch_row, None)] if torch_row else []
    for path in map(Path, artifacts):
        recipe, _ = _peek(path)
        for provider in (providers if providers and runs_on_onnxruntime(path, backend) else [None]):
            name = recipe or path.name
            if provider and (len(providers) > 1 or provider != "cpu"):
                name = f"{name} ({provider})"
            rows.append((name, path))
    return rows


def choose_baseline(baseline: str | None, rows: list[tuple[str, Path | None]]) -> BaselineChoice | None:
    """Resolve `baseline` against the planned rows: a folder the user passed (matched by path) or a
    row name. Ambiguous or unknown names are refused, listing what would work."""
    if baseline is None:
        return None
    given = Path(baseline)
    folder_rows = [name for name, path in rows if path is not None and _same(path, given)]
    if len(folder_rows) == 1:
        return BaselineChoice(baseline, "folder", folder=given)
    if len(folder_rows) > 1:
        raise OptionError(f"--baseline {baseline} is a folder with {len(folder_rows)} rows "
                          f"({', '.join(folder_rows)}); name one of those rows instead.")
    named = [name for name, _ in rows if name == baseline]
    if len(named) == 1:
        return BaselineChoice(baseline, "row", row=baseline)
    folders = [str(path) for _, path in rows if path is not None]
    names = [name for name, _ in rows]
    if len(named) > 1:
        raise OptionError(f"--baseline {baseline!r} names {len(named)} rows (two artifacts of one recipe); "
                          f"pass the folder instead: {', '.join(dict.fromkeys(folders))}.")
    raise OptionError(f"--baseline {baseline!r} is none of the artifact folders passed "
                      f"({', '.join(dict.fromkeys(folders)) or 'none'}) nor a row "
                      f"({', '.join(names) or 'none'}). Pass one of those.")


def common_input_hw(artifacts: Sequence[str | Path]) -> tuple[int, int] | None:
    """The input size (H, W) the artifacts were exported at, which the torch row then runs at too, so
    every row times the same work. Artifacts of different sizes are refused: their ratios would compare
    unlike work. None when no manifest can be read (the torch row keeps its model's size)."""
    sizes: dict[tuple[int, int], list[str]] = {}
    for path in map(Path, artifacts):
        hw = _peek_doc(path).get("input_hw")
        if isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) for v in hw):  # else: the row says why
            sizes.setdefault((hw[0], hw[1]), []).append(str(path))
    if len(sizes) > 1:
        listed = "; ".join(f"{h}x{w}: {', '.join(paths)}" for (h, w), paths in sizes.items())
        raise OptionError(f"The artifacts were exported at different input sizes ({listed}); their latencies "
                          "do not compare. Bench artifacts of one size together (export them with the same "
                          f"{option('--input-size', 'input_size')}).")
    return next(iter(sizes), None)


def runs_on_onnxruntime(path: Path, backend: str | None) -> bool:
    """Whether the artifact at `path` opens in ONNX Runtime (its rows multiply by the providers)."""
    if backend is not None:
        return backend == "onnxruntime"
    return _peek(path)[1] == "onnx"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return str(a) == str(b)


def _peek(path: Path) -> tuple[str | None, str | None]:
    """(recipe, target) from the manifest, or (None, None) when it cannot be read (the row reports why
    when the artifact is opened)."""
    doc = _peek_doc(path)
    return doc.get("recipe"), doc.get("target")


def _peek_doc(path: Path) -> dict:
    """The manifest as JSON, or {} when it cannot be read."""
    try:
        doc = json.loads((path / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
