"""`sapiens-edge` command line: a thin layer over the Python API.

User mistakes (SapiensEdgeError) print one clear message and exit 2, without a traceback.
Third-party output is hidden and counted unless --verbose (sapiens_edge.quiet).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import cli_parser
from .errors import RandomWeightsWarning, SapiensEdgeError, cli_messages
from .quiet import Quiet
from .signals import Terminated, terminate_as_interrupt

if TYPE_CHECKING:
    from .results_io import PredictionRecords


def _cmd_models(args: argparse.Namespace) -> int:
    from .zoo import list_models

    models = list_models(task=args.task, official_only=args.official)
    if args.json:
        print(json.dumps([{"name": m.name, "task": m.task, "size": m.size, "params": m.params,
                           "input_hw": list(m.input_hw),
                           "official": m.official.ref if m.official else None} for m in models], indent=2))
        return 0
    rows = [(m.name, m.task, f"{m.params / 1e6:,.1f} M", "x".join(map(str, m.input_hw)),
             f"hf://{m.official.repo_id}" if m.official else "none (own weights or random init)")
            for m in models]
    _table(("model", "task", "params", "input HxW", "official checkpoint"), rows)
    print("\nMeta released no 0.1b task heads: 0.4b is the smallest official task model.")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .checkpoint import inspect_checkpoint

    info = inspect_checkpoint(args.file)
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
        return 0 if info.model else 1
    _table(("field", "value"), [
        ("file", str(info.path)), ("model", info.model or "unrecognised"), ("task", info.task or "?"),
        ("size", info.size or "?"), ("layout", info.layout), ("dtype", info.dtype),
        ("parameters", f"{info.params:,}"), ("tensors", str(info.num_tensors)),
        ("file size", f"{info.file_size / 2**20:,.1f} MiB"),
    ])
    for p in info.problems:
        print(f"problem: {p}")
    return 0 if info.model else 1





def _cmd_predict(args: argparse.Namespace) -> int:
    from .errors import require

    require("torch", "torch", "`sapiens-edge predict` (the PyTorch reference)")
    import torch

    from .predict import predict

    _need_weights(args, "predict")
    if args.threads:
        torch.set_num_threads(args.threads)
    records = predict(args.model, _images_or_bundled(args.images), args.output, weights=args.weights, boxes=args.box,
                      flip_test=False if args.no_flip else None, force=args.force)
    return _wrote(records, args.output)





def _cmd_recipes(args: argparse.Namespace) -> int:
    from .export.recipes import RECIPES, availability
    from .export.target_table import runs_on

    if args.markdown:
        from .export.recipe_table import markdown

        print(markdown(), end="")
        return 0
    info = None
    if args.model:
        from .zoo import get_model_info

        info = get_model_info(args.model)
    rows = []
    for r in RECIPES.values():
        ok, reason = availability(r, info, args.input_size)
        # calibration: its methods (first = default), or "no"
        calib = "/".join(r.calibration_methods) or "yes" if r.needs_calibration else "no"
        rows.append((r.name, r.target, r.precision, calib, runs_on(r), "yes" if ok else "no", "" if ok else reason))
    if args.json:
        keys = ("recipe", "target", "precision", "calibration", "runs_on", "available", "reason")
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
        return 0
    # "available": exports here; "runs on": where the artifact runs (Core ML: exported anywhere, run on Apple)
    _table(("recipe", "target", "precision", "calibration", "runs on", "available", "reason"), rows)
    return 0


def _need_weights(args: argparse.Namespace, command: str) -> None:
    if args.weights is None and not args.random_weights:
        raise SapiensEdgeError(
            f"{command} needs --weights FILE.safetensors (or hf://facebook/sapiens2-<task>-<size>); "
            "pass --random-weights to use a seeded random initialisation on purpose.")
    if args.weights is not None and args.random_weights:
        raise SapiensEdgeError("--weights and --random-weights exclude each other: pass one.")
    if args.random_weights:  # asked for: no warning, one plain note when the command is done (main)
        warnings.filterwarnings("ignore", category=RandomWeightsWarning)


def _images_or_bundled(images: list[str]) -> list[str]:
    """The images given, or the bundled photo (a first run needs no photo of one's own)."""
    if images:
        return images
    from .metadata import bundled_photo

    print(f"no image given: using the bundled photo {bundled_photo()}", file=sys.stderr)
    return [str(bundled_photo())]


def _key_values(items: list[str], flag: str = "--target-option", example: str = "input=tensor") -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SapiensEdgeError(f"{flag} takes KEY=VALUE, got {item!r} (e.g. {example}).")
        out[key.strip()] = value.strip()
    return out








def _cmd_export(args: argparse.Namespace) -> int:
    from .errors import require

    require("torch", "torch", "`sapiens-edge export`")
    _need_weights(args, "export")
    from .export.core import export

    keep_float = tuple(args.keep_float)
    if args.keep_float_blocks is not None:
        from sapiens_edge.quantize.policy import first_blocks

        from .zoo import get_model_info

        keep_float += first_blocks(args.keep_float_blocks, get_model_info(args.model).arch.depth)
    art = export(args.model, args.recipe, args.output, weights=args.weights, input_size=args.input_size,
                 calibration=args.calibration, calibration_limit=args.calibration_limit,
                 calibration_method=args.calibration_method, keep_float=keep_float,
                 target_options=_key_values(args.target_option), force=args.force, decode=args.decode)
    size = sum((art.path / f).stat().st_size for f in art.manifest.files) / 2**20
    print(f"{art.path}: {art.manifest.recipe} {art.manifest.model_file} ({size:,.1f} MiB) in {art.seconds:.1f} s")
    return 0


def _backend_options(args: argparse.Namespace) -> dict:
    opts = {}
    if args.provider:
        opts["provider"] = args.provider
    if args.provider_option:
        if not args.provider:
            raise SapiensEdgeError("--provider-option goes with --provider (the ONNX Runtime provider it configures).")
        opts["provider_options"] = _key_values(args.provider_option, "--provider-option", "trt_fp16_enable=True")
    if args.threads:
        opts["threads"] = args.threads
    if getattr(args, "graph_optimization", None):
        opts["graph_optimization"] = args.graph_optimization
    if getattr(args, "compute_units", None):
        opts["compute_units"] = args.compute_units
    if getattr(args, "pieces", None):
        opts["pieces"] = args.pieces
    for key in ("device", "inference_precision"):  # the openvino backend's
        if getattr(args, key, None):
            opts[key] = getattr(args, key)
    tensorrt = {"engine_cache": args.engine_cache, "workspace_mib": args.workspace}
    if any(v is not None for v in tensorrt.values()) and args.backend != "tensorrt":
        raise SapiensEdgeError("--engine-cache and --workspace go with --backend tensorrt (the TensorRT engine "
                               "they configure).")
    opts.update({k: v for k, v in tensorrt.items() if v is not None})
    return opts


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import run_artifact

    records = run_artifact(args.artifact, _images_or_bundled(args.images), args.output, backend=args.backend,
                           verify=not args.no_verify, boxes=args.box, flip_test=False if args.no_flip else None,
                           force=args.force, **_backend_options(args))
    return _wrote(records, args.output)


def _wrote(records: PredictionRecords, output: str) -> int:
    """Say what `run` / `predict` wrote and which images failed; exit 1 when any did."""
    print(f"wrote {len(records)} result(s) to {output}")
    for failure in records.failures:
        print(f"failed: {failure.image}: {failure.reason}", file=sys.stderr)
    if records.failures:
        print(f"{len(records.failures)} image(s) could not be read; the others were written", file=sys.stderr)
    return 1 if records.failures else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .errors import require

    require("torch", "torch", "`sapiens-edge validate` (it runs the PyTorch reference)")
    from .validation import validate

    report = validate(args.artifact, weights=args.weights, images=args.images, backend=args.backend,
                      report=args.report, verify=not args.no_verify, force=args.force, **_backend_options(args))
    print(report.to_markdown())
    return 0 if report.passed else 1


def _cmd_check(args: argparse.Namespace) -> int:
    from collections import Counter

    from .export.tensorrt_check import check_tensorrt

    report = check_tensorrt(args.artifact, args.tensorrt)
    rules = report.rules
    note = f"; not found in a source, inferred: {rules.inferred}" if rules.inferred else ""
    if report.compatible:
        print(f"{report.model}: compatible with TensorRT {rules.version}'s ONNX parser (static check{note})")
        return 0
    for violation in report.violations:
        print(violation.line())
    counts = Counter(v.rule for v in report.violations)
    print(f"{report.model}: {len(report.violations)} violation(s) for TensorRT {rules.version}: "
          + ", ".join(f"{rule} {n}" for rule, n in counts.most_common()) + note)
    return 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .benchmarks import bench_output
    from .benchmarks.accuracy import load_validation_reports
    from .benchmarks.bench import bench

    if (args.weights or args.random_weights) and not args.torch_baseline:
        raise SapiensEdgeError("--weights and --random-weights go with --torch-baseline MODEL (the weights of the "
                               "torch row).")
    if args.torch_baseline:
        _need_weights(args, "bench --torch-baseline")
    opts = _backend_options(args)
    opts.pop("threads", None)
    providers = opts.pop("provider", None)
    runs = None if args.seconds else (args.runs or 10)
    if args.output:  # before any work: a previous run's files are refused, or removed with --force
        bench_output.prepare_output(Path(args.output), args.force)
    result = bench(args.artifacts, threads=args.threads, warmup=args.warmup, runs=runs, seconds=args.seconds,
                   backend=args.backend, backend_options=opts, providers=providers, placement=args.placement,
                   torch_baseline=(args.torch_baseline, args.weights) if args.torch_baseline else None,
                   torch_device=args.torch_device,
                   baseline=args.baseline, memory=args.memory,
                   validation=load_validation_reports(args.validation),
                   json_path=Path(args.output) / "bench.json" if args.output else None, force=args.force,
                   progress=lambda m: print(m, file=sys.stderr, flush=True))
    bench_output.print_table(result)
    if args.output:
        files = bench_output.write_all(result, Path(args.output), plots=not args.no_plots)
        print(f"wrote {', '.join(str(f) for f in files.values())}")
    if result.interrupted:
        return 130
    return 1 if any(r.status != "ok" for r in result.rows) else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import make_report

    recipes = args.recipes if args.recipes in (None, "default", "all") else args.recipes.split(",")
    summary = make_report(args.output, model=args.model, recipes=recipes, weights=args.weights,
                          input_size=args.input_size, calibration=args.calibration, runs=args.runs,
                          threads=args.threads, providers=args.provider, torch_device=args.torch_device,
                          force=args.force)
    failed = [name for name, r in summary["recipes"].items() if r["passed"] is False]
    if failed:
        print(f"validation FAILED for {', '.join(failed)} (see {args.output}/validation/<recipe>.md)", file=sys.stderr)
    return 1 if failed and args.strict else 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    for r in [header, ["-" * w for w in widths], *rows]:
        print(line.format(*r).rstrip())





def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser, each command bound to this module's `_cmd_<name>` (looked up at call time)."""
    return cli_parser.build_parser({name: globals()[f"_cmd_{name}"] for name in cli_parser.COMMANDS})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Messages name flags (--force), not keywords; the summary of hidden output comes before `error:`.
        with terminate_as_interrupt(), cli_messages(), Quiet(enabled=not args.verbose):
            warnings.simplefilter("always", RandomWeightsWarning)
            rc = args.func(args)
            if getattr(args, "random_weights", False):
                print("note: --random-weights: a seeded random initialisation, its outputs mean nothing",
                      file=sys.stderr)
            return rc
    except SapiensEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:  # SIGTERM / SIGHUP: unwound like Ctrl-C, nothing half-written left
        print(f"terminated ({exc}): cleaned up", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sapiens-edge models | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # a full disk where no writer of ours named the folder (a converter's temp file)
        from pathlib import Path

        from .fileio import disk_full_error, is_disk_full

        if not is_disk_full(exc):
            raise
        where = getattr(exc, "filename", None)
        print(f"error: {disk_full_error(Path(where).parent, cleaned=False)}" if where else
              f"error: the disk filled up ({exc}). Free space (`df -h` shows which disk) and run again.",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
