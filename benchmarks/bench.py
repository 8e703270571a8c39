"""`sapiens-edge bench`: artifacts side by side on this device, in interleaved rounds.

For each artifact: load time, first-inference latency, steady-state latency (mean, p50, p90, p99,
std), throughput, file size, and (``memory=True``) the peak RSS of a fresh process that loads it
and runs once; the torch eager model can join as a baseline row. After the warm-up, every round
runs each configuration once, in turn, so a slow spell of the machine (thermal throttling on a Pi,
a busy core) hits all of them alike; ratios are against the chosen baseline's p50.

A row that cannot run (missing or corrupt artifact, backend absent here) is kept with its reason
and the others go on. The JSON is rewritten after every round, so an interrupted run keeps what it
measured (`interrupted: true`).

Torch-free unless the torch baseline is asked for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.fileio import jsonable, refuse_overwrite

from .accuracy import accuracy_of, match_validation
from .bench_request import (
    TORCH_ROW,
    BaselineChoice,
    check_backend,
    check_counts,
    choose_baseline,
    common_input_hw,
    planned_rows,
    runs_on_onnxruntime,
)
from .stats import latency_stats
from .sysinfo import system_info


@dataclass
class BenchRow:
    name: str  # recipe (or "torch eager fp32")
    artifact: str | None
    status: str = "ok"  # ok | failed | unavailable
    reason: str = ""
    recipe: str | None = None
    task: str | None = None
    backend: str | None = None
    backend_summary: str = ""
    input_hw: list[int] | None = None  # (H, W) of the input it ran on
    file_mib: float | None = None
    load_s: float | None = None
    first_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    speedup: float | None = None  # baseline p50 / this p50
    peak_rss_mib: float | None = None
    gpu_mem_mib: float | None = None  # a GPU provider's device memory (nvidia-smi), with memory=True
    # ONNX Runtime: which provider ran each node; OpenVINO: the precision each op ran in
    placement: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)  # from a validation report


@dataclass
class BenchResult:
    rows: list[BenchRow]
    baseline: str | None
    settings: dict[str, Any]
    system: dict[str, Any]
    interrupted: bool = False
    created: str = ""

    def row(self, name: str) -> BenchRow:
        return next(r for r in self.rows if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return jsonable({"schema": "sapiens-edge.bench", "schema_version": 1, **asdict(self)})


class _Config:
    """One configuration being timed: its row and the call that runs one inference."""

    def __init__(self, row: BenchRow, fn: Callable[[], Any] | None, close: Callable[[], None] = lambda: None):
        self.row, self.fn, self.close = row, fn, close
        self.options: dict[str, Any] = {}  # the backend options this row was opened with
        self.input: np.ndarray | None = None  # the batch it runs (reused by the placement profile)


def bench(artifacts: Sequence[str | Path], *, threads: int | None = None, warmup: int = 1, runs: int | None = 10,
          seconds: float | None = None, backend: str | None = None, backend_options: dict[str, Any] | None = None,
          providers: Sequence[str] | None = None,
          torch_baseline: tuple[str, str | Path | None] | None = None, torch_device: str = "cpu",
          baseline: str | None = None,
          memory: bool = False, placement: bool | None = None, validation: dict[str, dict[str, Any]] | None = None,
          json_path: str | Path | None = None, force: bool = False, clock: Callable[[], float] = time.perf_counter,
          progress: Callable[[str], None] = lambda _: None) -> BenchResult:
    """Benchmark `artifacts` side by side. `runs` rounds, or as many as fit in `seconds`;
    `providers` (ONNX Runtime: "cpu", "cuda", "tensorrt", ...) runs every ONNX artifact once per
    provider, side by side (rows "onnx-fp16 (cuda)"); other backends ignore it.
    `torch_baseline=(zoo model, weights)` adds the PyTorch eager row (on `torch_device`: "cpu" or
    "cuda"); `baseline` names the row the
    ratios refer to (default: the torch row if present, else the first row that ran);
    `placement` profiles one more session per ONNX Runtime or OpenVINO row after the rounds and records which
    provider ran each node (default: on for rows on a provider other than the CPU's), or which precision each
    OpenVINO op ran in (default: on);
    `validation`: artifact path or recipe -> validation report (JSON dict), for the accuracy column
    and plot.

    Args:
        artifacts: artifact folders (from `export()`).
        threads: intra-op threads for every engine (None: the engine's default, all cores).
        warmup: untimed runs before the rounds (the first is reported as first_s).
        runs: timed rounds; exactly one of `runs` and `seconds`.
        seconds: time rounds for this long instead.
        backend: runtime backend for every artifact (None: each manifest's default).
        backend_options: options passed to `runtime.load` (e.g. compute_units).
        providers: ONNX Runtime providers; each ONNX artifact gets a row per provider.
        torch_baseline: (zoo model, weights) for a PyTorch eager row.
        torch_device: "cpu" or "cuda", the device of the torch row.
        baseline: the row the speed ratios refer to: an artifact folder as passed, or a row name
            ("torch eager fp32", "onnx-int8", "onnx-fp16 (cuda)").
        memory: also measure each artifact's peak RSS in a fresh process.
        placement: profile which provider runs each ONNX node and which precision each OpenVINO op runs in
            (None: on for ONNX Runtime's non-CPU providers and for OpenVINO rows).
        validation: artifact path or recipe -> validation report dict, for the accuracy column.
        json_path: write the result there as JSON after every round (what was measured survives an
            interruption).
        force: replace an existing `json_path` (else OutputExistsError before anything loads).
        clock: the timer (tests pass a fake one).
        progress: called with one line per step.

    Returns:
        A `BenchResult`: one row per artifact (and provider), with latency statistics, ratios,
        system information and, when asked, memory, placement and accuracy.

    Raises:
        OutputExistsError: before anything loads, when `json_path` exists and `force` is off.
        OptionError: before anything loads, for counts (runs/seconds/warmup), an unknown torch
            device, backend or backend option, artifacts exported at different input sizes (the
            torch row runs at theirs), and a `baseline` that is no folder passed nor row
            (or names two rows). A row that fails to open or run is recorded with its status
            instead ("failed", or "unavailable" when it runs only elsewhere), and the others run.
    """
    check_counts(runs, seconds, warmup, torch_device)
    if json_path:
        refuse_overwrite([Path(json_path)], force, where=("--output", "json_path"))
    options = dict(backend_options or {})
    if threads:
        options["threads"] = threads
    if providers is None and options.get("provider"):
        providers = [options["provider"]]
    options.pop("provider", None)
    providers = list(providers or [])
    check_backend(backend, {k: v for k, v in options.items() if k != "provider_options"})
    torch_row = (TORCH_ROW if torch_device == "cpu" else f"{TORCH_ROW} ({torch_device})") if torch_baseline else None
    choice = choose_baseline(baseline, planned_rows(artifacts, providers, backend, torch_row))
    input_hw = common_input_hw(artifacts)  # the torch row runs at the artifacts' size
    settings = {"threads": threads, "warmup": warmup, "runs": runs, "seconds": seconds, "backend": backend,
                "backend_options": options, "providers": providers,
                "baseline": {"given": choice.given, "by": choice.by} if choice else None}
    configs: list[_Config] = []
    if torch_baseline is not None:
        configs.append(_torch_config(*torch_baseline, threads=threads, device=torch_device, input_hw=input_hw,
                                     clock=clock, progress=progress))
    for path in artifacts:
        path = Path(path)
        on_ort = providers and runs_on_onnxruntime(path, backend)
        for provider in (providers if on_ort else [None]):
            opts = {**options, "provider": provider} if provider else dict(options)
            if provider == "cpu":  # provider_options configure the accelerator rows (the CPU's differ)
                opts.pop("provider_options", None)
            cfg = _artifact_config(path, backend, opts, clock, progress)
            cfg.options = opts
            if provider and (len(providers) > 1 or provider != "cpu"):
                cfg.row.name = f"{cfg.row.name} ({provider})"
            configs.append(cfg)
    _disambiguate(configs)
    sizes = [c.row.input_hw for c in configs if c.row.input_hw]
    settings["input_hw"] = sizes[0] if sizes else (list(input_hw) if input_hw else None)
    baseline = _baseline_row(choice, configs)
    for cfg in configs:
        report = match_validation(validation or {}, artifact=cfg.row.artifact, recipe=cfg.row.recipe or cfg.row.name,
                                  backend=cfg.row.backend, provider=cfg.options.get("provider"))
        if report:
            cfg.row.accuracy = accuracy_of(report)
        if memory and cfg.row.status == "ok" and cfg.row.artifact:
            cfg.row.peak_rss_mib, cfg.row.gpu_mem_mib = _peak_memory(
                Path(cfg.row.artifact), threads, {k: v for k, v in cfg.options.items() if k != "threads"},
                cfg.row.backend)
    result = BenchResult(rows=[c.row for c in configs], baseline=None, settings=settings, system=system_info(),
                         created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    live = [c for c in configs if c.row.status == "ok"]
    try:
        for cfg in live:  # first inference, then the rest of the warm-up
            _timed(cfg, clock, first=True)
            for _ in range(warmup - 1):
                _timed(cfg, clock, record=False)
        start, done = clock(), 0
        while live and ((runs is not None and done < runs) or (seconds is not None and clock() - start < seconds)):
            for cfg in live:
                _timed(cfg, clock)
            live = [c for c in live if c.row.status == "ok"]
            done += 1
            _finish(result, baseline)
            progress(f"round {done}" + (f"/{runs}" if runs else "") + ": "
                     + ", ".join(f"{c.row.name} {c.row.times_s[-1]:.3f} s" for c in live))
            if json_path:
                _write_json(result, Path(json_path))
    except KeyboardInterrupt:
        result.interrupted = True
        progress("interrupted: keeping the rounds measured so far")
    finally:
        for cfg in configs:
            cfg.close()
    if result.system.get("board"):  # a Jetson or a Pi: its temperature and throttling after the work
        from .sysinfo import board

        result.system["board_end"] = board()
    if not result.interrupted:
        _record_placement(configs, placement, progress)
    _finish(result, baseline)
    if json_path:
        _write_json(result, Path(json_path))
    return result


def _baseline_row(choice: BaselineChoice | None, configs: Sequence[_Config]) -> str | None:
    """The row name of the user's baseline (a folder's row is named by its manifest's recipe)."""
    if choice is None:
        return None
    if choice.by == "row":
        return choice.row
    folder = choice.folder.resolve()
    return next(c.row.name for c in configs if c.row.artifact and Path(c.row.artifact).resolve() == folder)


def _timed(cfg: _Config, clock: Callable[[], float], *, first: bool = False, record: bool = True) -> None:
    row = cfg.row
    try:
        t0 = clock()
        cfg.fn()
        dt = clock() - t0
    except Exception as exc:  # one failing configuration must not stop the others
        row.status, row.reason = "failed", f"inference failed: {type(exc).__name__}: {exc}"
        return
    if first:
        row.first_s = dt
    elif record:
        row.times_s.append(dt)


def _finish(result: BenchResult, baseline: str | None) -> None:
    for row in result.rows:
        row.stats = latency_stats(row.times_s) if row.times_s else {}
    timed = [r for r in result.rows if r.stats]
    if baseline is not None:  # checked before the run (bench_request.choose_baseline)
        base = next((r for r in timed if r.name == baseline), None)
    else:
        base = next((r for r in timed if r.name.startswith(TORCH_ROW)), timed[0] if timed else None)
    result.baseline = base.name if base else baseline
    for row in result.rows:
        row.speedup = (base.stats["p50_s"] / row.stats["p50_s"]) if base and row.stats else None


def _artifact_config(path: Path, backend: str | None, options: dict[str, Any], clock: Callable[[], float],
                     progress: Callable[[str], None]) -> _Config:
    from sapiens_edge import runtime
    from sapiens_edge.errors import MissingDependencyError, PlatformUnavailableError, SapiensEdgeError
    from sapiens_edge.manifest import read_manifest
    from sapiens_edge.runtime.backends import backend_options, default_backend

    row = BenchRow(name=path.name, artifact=str(path))
    try:
        manifest = read_manifest(path)
        row.name, row.recipe, row.task = manifest.recipe, manifest.recipe, manifest.task
        row.file_mib = sum((path / f).stat().st_size for f in manifest.files if f != "README.md") / 2**20
        # The shared settings (threads) go to the backends that take them (Core ML has no thread count).
        name = backend or default_backend(manifest)
        accepted = {k: v for k, v in options.items() if k in backend_options(name) or k != "threads"}
        progress(f"loading {path} ({manifest.recipe}) ...")
        t0 = clock()
        predictor = runtime.load(path, name, verify=False, **accepted)  # hashes were just checked
        row.load_s = clock() - t0
    except (MissingDependencyError, PlatformUnavailableError) as exc:  # runs elsewhere: not a failure
        row.status, row.reason = "unavailable", str(exc)
        return _Config(row, None)
    except SapiensEdgeError as exc:
        row.status, row.reason = "failed", str(exc)
        return _Config(row, None)
    row.backend = predictor.backend
    row.backend_summary = predictor.describe().get("summary", "")
    row.input_hw = list(manifest.input_hw)
    _, x = prepared_photo(manifest.task, tuple(manifest.input_hw))
    cfg = _Config(row, lambda: predictor.run(x), predictor.close)
    cfg.input = x
    return cfg


def _disambiguate(configs: Sequence[_Config]) -> None:
    """Rows are named by recipe; two artifacts of one recipe (an A/B of two exports) add their folder."""
    names = [c.row.name for c in configs]
    for cfg in configs:
        if names.count(cfg.row.name) > 1 and cfg.row.artifact:
            cfg.row.name = f"{cfg.row.name} [{cfg.row.artifact}]"


def _record_placement(configs: Sequence[_Config], placement: bool | None, progress: Callable[[str], None]) -> None:
    """Node placement of each ONNX Runtime row (auto: those on a provider other than the CPU's) and the precision
    each op of an OpenVINO row ran in (auto: every OpenVINO row)."""
    from .openvino_placement import measure_openvino_placement
    from .placement import measure_placement

    for cfg in configs:
        row, provider = cfg.row, cfg.options.get("provider")
        if not (row.status == "ok" and row.backend in ("onnxruntime", "openvino") and cfg.input is not None):
            continue
        openvino = row.backend == "openvino"
        if not (placement if placement is not None else openvino or provider not in (None, "cpu")):
            continue
        progress(f"profiling {'the precision of each op' if openvino else 'which provider runs each node'} "
                 f"of {row.name} ...")
        try:
            measure = measure_openvino_placement if openvino else measure_placement
            row.placement = measure(row.artifact, cfg.input, **cfg.options)
        except Exception as exc:  # the timings stand; the row says why placement is missing
            row.placement = {"error": f"{type(exc).__name__}: {exc}"}


def _torch_config(model: str, weights: str | Path | None, *, threads: int | None, device: str,
                  input_hw: tuple[int, int] | None, clock: Callable[[], float],
                  progress: Callable[[str], None]) -> _Config:
    row = BenchRow(name=TORCH_ROW if device == "cpu" else f"{TORCH_ROW} ({device})", artifact=None, backend="torch")
    try:
        import torch

        from sapiens_edge.loading import load_model
    except ImportError:
        row.status, row.reason = "unavailable", "needs torch: pip install 'sapiens-edge[torch]'"
        return _Config(row, None)
    if device == "cuda" and not torch.cuda.is_available():
        row.status, row.reason = "unavailable", f"this torch ({torch.__version__}) sees no CUDA device"
        return _Config(row, None)
    if threads:
        torch.set_num_threads(threads)
    progress(f"loading {model} (torch eager fp32, {device}) ...")
    t0 = clock()
    net = load_model(model, weights).to(device)
    row.load_s = clock() - t0
    row.task, row.backend_summary = net.sapiens_info.task, f"PyTorch {torch.__version__} eager fp32 ({device})"
    hw = tuple(input_hw or net.sapiens_info.input_hw)  # the artifacts' size: like for like
    row.input_hw = list(hw)
    x = torch.from_numpy(prepared_photo(net.sapiens_info.task, hw)[1]).to(device)

    def run() -> None:
        with torch.inference_mode():
            net(x)
        if device == "cuda":  # kernels are asynchronous: time them to the end
            torch.cuda.synchronize()

    return _Config(row, run)


def prepared_photo(task: str, input_hw: tuple[int, int]) -> tuple[Any, np.ndarray]:
    """The bundled photo prepared for `task` at `input_hw`: (the processor's prepared input, its float32 array),
    what every benchmark and study runs."""
    from sapiens_edge import runtime
    from sapiens_edge.metadata import bundled_photo

    prepared = runtime.get_processor(task).prepare(runtime.load_image(bundled_photo()), input_hw=input_hw)
    return prepared, np.ascontiguousarray(prepared.inputs, np.float32)


def _peak_memory(artifact: Path, threads: int | None, options: dict[str, Any] | None,
                 backend: str | None) -> tuple[float | None, ...]:
    """(peak RSS MiB, GPU MiB or None) of a fresh process that loads the artifact in the row's backend and runs
    it once."""
    from .runtime_memory import measure

    try:
        row = measure(artifact, threads or os.cpu_count() or 1, options, backend)
    except Exception:  # reported as missing, not guessed
        return None, None
    return row["after_run_mib"], row.get("gpu_mib")


def _write_json(result: BenchResult, path: Path) -> None:
    from sapiens_edge.fileio import atomic_write_json

    atomic_write_json(path, result.to_json())
