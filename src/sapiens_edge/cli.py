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

from . import __version__
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


def _parse_box(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise argparse.ArgumentTypeError(f"--box wants x1,y1,x2,y2 with x2>x1 and y2>y1, got {text!r}")
    return box


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


def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-size wants HxW, e.g. 512x384, got {text!r}") from None
    return h, w


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


def _providers() -> tuple[str, ...]:
    """--provider names: the ONNX Runtime backend's table (names only; onnxruntime is not imported)."""
    from .runtime.backends.onnxruntime_backend import PROVIDERS

    return tuple(PROVIDERS)


def _provider_list(text: str) -> list[str]:
    """`--provider cpu,cuda`: each one checked here, so a typo fails before anything is loaded."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in _providers()]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown provider(s) {', '.join(bad) or repr(text)}; "
                                         f"choose from {', '.join(_providers())}, comma-separated")
    return list(dict.fromkeys(names))


def _cmd_export(args: argparse.Namespace) -> int:
    from .errors import require

    require("torch", "torch", "`sapiens-edge export`")
    _need_weights(args, "export")
    from .export.core import export

    art = export(args.model, args.recipe, args.output, weights=args.weights, input_size=args.input_size,
                 calibration=args.calibration, calibration_limit=args.calibration_limit,
                 calibration_method=args.calibration_method, keep_float=tuple(args.keep_float),
                 target_options=_key_values(args.target_option), force=args.force)
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
    if getattr(args, "compute_units", None):
        opts["compute_units"] = args.compute_units
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


def _tasks() -> tuple[str, ...]:
    """--task choices: the zoo's tasks."""
    from .zoo import MODELS

    return tuple(dict.fromkeys(m.task for m in MODELS.values()))


def build_parser() -> argparse.ArgumentParser:
    # Choices come from the tables they name (all torch-free): recipes, the Core ML backend's compute units.
    from .export.recipes import DEFAULT_REPORT_RECIPES, calibration_methods
    from .export.target_table import TARGETS
    from .export.tensorrt_rules import RULES as TENSORRT_RULES
    from .runtime.backends.coreml_backend import COMPUTE_UNITS

    verbose_help = "show third-party warnings and log lines (hidden and counted by default)"
    p = argparse.ArgumentParser(prog="sapiens-edge", description="Sapiens2 on phones and edge boards.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                   help="print the sapiens-edge version and exit")
    p.add_argument("--verbose", "-v", action="store_true", help=verbose_help)
    # Also after the subcommand (`sapiens-edge export ... --verbose`); SUPPRESS keeps the global value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    m = command("models", help="list the model zoo and official checkpoints")
    m.add_argument("--task", choices=_tasks(), help="only this task")
    m.add_argument("--official", action="store_true", help="only models with an official checkpoint")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.set_defaults(func=_cmd_models)

    i = command("inspect", help="name the model a .safetensors checkpoint holds")
    i.add_argument("file", help="a .safetensors checkpoint")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=_cmd_inspect)

    r = command("predict", help="run the PyTorch reference model on images")
    r.add_argument("model", help="zoo name, e.g. sapiens2-0.4b-seg")
    r.add_argument("images", nargs="*", help="image files or folders of them (default: the bundled photo, said so)")
    r.add_argument("--weights", help="local .safetensors or hf://ORG/REPO[/FILE]")
    r.add_argument("--random-weights", action="store_true", help="run with seeded random weights")
    r.add_argument("--output", "-o", required=True, help="folder for JSON, overlays and arrays")
    r.add_argument("--box", type=_parse_box, action="append",
                   help="pose: person box x1,y1,x2,y2 (repeatable; default: the whole image)")
    r.add_argument("--no-flip", action="store_true", help="pose: disable the flip test")
    r.add_argument("--threads", type=int, help="torch intra-op threads")
    r.add_argument("--force", action="store_true", help="replace existing output files")
    r.set_defaults(func=_cmd_predict)

    rc = command("recipes", help="list export recipes and whether each is available here")
    rc.add_argument("--model", help="check availability for this zoo model")
    rc.add_argument("--input-size", type=_parse_hw, help="HxW to check (default: the model's)")
    rc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rc.add_argument("--markdown", action="store_true",
                    help="print the recipe table as Markdown (what docs/recipes.md holds)")
    rc.set_defaults(func=_cmd_recipes)

    e = command("export", help="export a model to an artifact folder with a recipe")
    e.add_argument("model", help="zoo name, e.g. sapiens2-0.4b-seg")
    e.add_argument("--recipe", required=True, help="e.g. onnx-fp32, onnx-int8 (see `sapiens-edge recipes`)")
    e.add_argument("--weights", help="local .safetensors or hf://ORG/REPO[/FILE]")
    e.add_argument("--random-weights", action="store_true", help="export a seeded random model on purpose")
    e.add_argument("--input-size", type=_parse_hw, help="HxW (default 1024x768; multiples of 16)")
    e.add_argument("--calibration", help="folder of photos for int8 calibration (default: built-in set)")
    e.add_argument("--calibration-limit", type=int, help="use at most this many calibration images")
    e.add_argument("--calibration-method", choices=calibration_methods(),
                   help="activation range estimate for int8 (default: the recipe's first; `sapiens-edge recipes` "
                        "lists each recipe's)")
    e.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help="leave layers whose parameter names contain PATTERN unquantized in static int8 "
                        "(repeatable), e.g. --keep-float decode_head. for the whole task head")
    e.add_argument("--target-option", action="append", default=[], metavar="KEY=VALUE",
                   help="target-specific option (repeatable): " + "; ".join(
                       f"{t.name} {k}={'|'.join(v)} (default {v[0]})" for t in TARGETS.values()
                       for k, v in t.options.items()))
    e.add_argument("--output", "-o", required=True, help="artifact folder to create")
    e.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    e.set_defaults(func=_cmd_export)

    def backend_args(sp: argparse.ArgumentParser, several_providers: bool = False) -> None:
        sp.add_argument("--backend", help="runtime backend (default: from the manifest, e.g. onnxruntime)")
        if several_providers:
            sp.add_argument("--provider", type=_provider_list, metavar="P[,P...]",
                            help="ONNX Runtime execution provider(s), never guessed: cpu, cuda, tensorrt, coreml; "
                                 "several (cpu,cuda) bench each ONNX artifact on each, side by side")
        else:
            sp.add_argument("--provider", choices=_providers(), help="ONNX Runtime execution provider (never guessed)")
        sp.add_argument("--provider-option", action="append", default=[], metavar="KEY=VALUE",
                        help="ONNX Runtime provider option (repeatable), e.g. trt_fp16_enable=True, "
                             "trt_engine_cache_enable=True, device_id=1")
        sp.add_argument("--threads", type=int, help="intra-op threads")
        sp.add_argument("--compute-units", choices=tuple(COMPUTE_UNITS),
                        help="Core ML compute units (coreml backend, macOS)")

    u = command("run", help="run an exported artifact on images (torch-free)")
    u.add_argument("artifact", help="artifact folder written by `sapiens-edge export`")
    u.add_argument("images", nargs="*", help="image files or folders of them (default: the bundled photo, said so)")
    u.add_argument("--output", "-o", required=True, help="folder for JSON, overlays and arrays")
    backend_args(u)
    u.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the artifact files")
    u.add_argument("--box", type=_parse_box, action="append", help="pose: person box x1,y1,x2,y2")
    u.add_argument("--no-flip", action="store_true", help="pose: disable the flip test")
    u.add_argument("--force", action="store_true", help="replace existing output files")
    u.set_defaults(func=_cmd_run)

    v = command("validate", help="compare an artifact with the PyTorch reference (exit 1 on failure)")
    v.add_argument("artifact", help="artifact folder written by `sapiens-edge export`")
    v.add_argument("--weights", help="the weights the artifact was exported from (default: as recorded)")
    v.add_argument("--images", help="folder of test images (default: the bundled photo)")
    v.add_argument("--report", help="write the report here (.json, plus .md beside it)")
    v.add_argument("--force", action="store_true", help="replace an existing report")
    backend_args(v)
    v.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the artifact files")
    v.set_defaults(func=_cmd_validate)
    c = command("check", help="check an ONNX artifact against TensorRT's ONNX parser, statically "
                               "(exit 1 with the violations)")
    c.add_argument("artifact", help="artifact folder written by `sapiens-edge export`, or an .onnx file")
    c.add_argument("--tensorrt", required=True, choices=tuple(TENSORRT_RULES),
                   help="TensorRT version (10.3: JetPack 6; 10.13: JetPack 7 / Thor)")
    c.set_defaults(func=_cmd_check)

    b = command("bench", help="benchmark artifacts side by side on this device (interleaved rounds)")
    b.add_argument("artifacts", nargs="+", help="artifact folders")
    backend_args(b, several_providers=True)
    b.add_argument("--warmup", type=int, default=1, help="untimed runs before the rounds (the first is reported)")
    how = b.add_mutually_exclusive_group()
    how.add_argument("--runs", type=int, help="timed rounds (default 10)")
    how.add_argument("--seconds", type=float, help="time rounds for this long instead")
    b.add_argument("--torch-baseline", metavar="MODEL", help="add PyTorch eager fp32 of this zoo model as a row")
    b.add_argument("--weights", help="weights of the --torch-baseline model")
    b.add_argument("--random-weights", action="store_true", help="seeded random weights for the --torch-baseline row")
    b.add_argument("--torch-device", choices=["cpu", "cuda"], default="cpu", help="device of the torch row")
    b.add_argument("--baseline", help="the row ratios refer to (default: the torch row, else the first)")
    b.add_argument("--validation", nargs="+", default=[], metavar="REPORT",
                   help="validation reports (.json from `validate --report`) for the accuracy column and plot")
    b.add_argument("--memory", action="store_true", help="also measure each artifact's peak RSS (fresh process)")
    b.add_argument("--placement", action=argparse.BooleanOptionalAction, default=None,
                   help="profile which ONNX Runtime provider runs each node (default: on for providers other "
                        "than cpu)")
    b.add_argument("--output", "-o", help="folder for bench.json, bench.csv, bench.md and the plots")
    b.add_argument("--no-plots", action="store_true", help="skip the plots (they need matplotlib)")
    b.add_argument("--force", action="store_true",
                   help="replace the outputs of a previous run in --output (its plots are removed)")
    b.set_defaults(func=_cmd_bench)

    rp = command("report", help="the main job: export, validate and benchmark a model; write a report card")
    rp.add_argument("model", nargs="?", default="sapiens2-0.1b-seg", help="zoo name (default sapiens2-0.1b-seg)")
    rp.add_argument("--recipes", help="comma-separated recipes, 'all' (every recipe available here) or 'default' "
                                      f"({', '.join(DEFAULT_REPORT_RECIPES)})")
    rp.add_argument("--weights", help="checkpoint (default: write seeded stand-in weights and say so)")
    rp.add_argument("--input-size", type=_parse_hw, help="HxW (default: the model's, 1024x768)")
    rp.add_argument("--calibration", help="folder of photos for int8 calibration (default: built-in set)")
    rp.add_argument("--runs", type=int, default=3, help="timed rounds")
    rp.add_argument("--threads", type=int, help="intra-op threads for every engine (default: all cores)")
    rp.add_argument("--provider", type=_provider_list, metavar="P[,P...]",
                    help="validate and bench each ONNX artifact on these ONNX Runtime providers (e.g. cpu,cuda)")
    rp.add_argument("--torch-device", choices=["cpu", "cuda"], default="cpu", help="device of the torch row")
    rp.add_argument("--output", "-o", required=True, help="folder for the artifacts and the report card")
    rp.add_argument("--force", action="store_true", help="replace existing outputs")
    rp.add_argument("--strict", action="store_true", help="exit 1 when a validation fails (a CI gate)")
    rp.set_defaults(func=_cmd_report)
    return p


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


if __name__ == "__main__":
    sys.exit(main())
