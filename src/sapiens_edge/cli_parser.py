"""The `sapiens-edge` argument parser: every subcommand, its arguments and their help, and the argument
types that check a value before anything loads. The commands themselves live in `sapiens_edge.cli`.
Choices come from the tables they name (zoo tasks, recipes, providers, compute units), never copied."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from . import __version__

COMMANDS = ("models", "inspect", "predict", "recipes", "export", "run", "validate", "check", "bench", "report")


def _parse_box(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise argparse.ArgumentTypeError(f"--box wants x1,y1,x2,y2 with x2>x1 and y2>y1, got {text!r}")
    return box


def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-size wants HxW, e.g. 512x384, got {text!r}") from None
    return h, w


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


def _tasks() -> tuple[str, ...]:
    """--task choices: the zoo's tasks."""
    from .zoo import MODELS

    return tuple(dict.fromkeys(m.task for m in MODELS.values()))


def build_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """Every subcommand with its arguments; `commands[name]` runs it (`sapiens_edge.cli` passes its own)."""
    # Choices come from the tables they name (all torch-free): recipes, the Core ML backend's compute units.
    from .export.recipes import DEFAULT_REPORT_RECIPES, calibration_methods
    from .export.target_table import TARGETS
    from .export.tensorrt_rules import RULES as TENSORRT_RULES
    from .runtime.backends.coreml_backend import COMPUTE_UNITS
    from .runtime.backends.openvino_backend import PRECISIONS as OPENVINO_PRECISIONS

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
    m.set_defaults(func=commands["models"])

    i = command("inspect", help="name the model a .safetensors checkpoint holds")
    i.add_argument("file", help="a .safetensors checkpoint")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=commands["inspect"])

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
    r.set_defaults(func=commands["predict"])

    rc = command("recipes", help="list export recipes and whether each is available here")
    rc.add_argument("--model", help="check availability for this zoo model")
    rc.add_argument("--input-size", type=_parse_hw, help="HxW to check (default: the model's)")
    rc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rc.add_argument("--markdown", action="store_true",
                    help="print the recipe table as Markdown (what docs/recipes.md holds)")
    rc.set_defaults(func=commands["recipes"])

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
    e.add_argument("--keep-float-blocks", type=int, metavar="N",
                   help="leave the first N transformer blocks unquantized in static int8 (adds --keep-float "
                        "backbone.blocks.0. ... backbone.blocks.N-1.): the lever for a large seg model below its "
                        "int8 gate")
    e.add_argument("--target-option", action="append", default=[], metavar="KEY=VALUE",
                   help="target-specific option (repeatable): " + "; ".join(
                       f"{t.name} {k}={'|'.join(v)} (default {v[0]})" for t in TARGETS.values()
                       for k, v in t.options.items()))
    e.add_argument("--decode", action="store_true",
                   help="decode in the graph (app-sized outputs): seg class ids, pose keypoints + scores, unit "
                        "normals (not pointmap; docs/decoded-outputs.md)")
    e.add_argument("--output", "-o", required=True, help="artifact folder to create")
    e.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    e.set_defaults(func=commands["export"])

    def backend_args(sp: argparse.ArgumentParser, several_providers: bool = False, pieces: bool = False) -> None:
        sp.add_argument("--backend", help="runtime backend (default: from the manifest, e.g. onnxruntime; "
                                          "tensorrt: a TensorRT engine built from an onnx artifact)")
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
        sp.add_argument("--graph-optimization", choices=("all", "extended", "basic", "disable"),
                        help="ONNX Runtime graph optimisation level (default all); disable keeps an fp16 model's "
                             "weights mapped from disk instead of converted copies (large models on CPU)")
        if pieces:
            sp.add_argument("--pieces", type=int, metavar="N",
                            help="ONNX Runtime on the CPU: run the graph as N consecutive sessions, one at a time, "
                                 "for models one session cannot hold in memory (validate picks N itself)")
        sp.add_argument("--compute-units", choices=tuple(COMPUTE_UNITS),
                        help="Core ML compute units (coreml backend, macOS)")
        sp.add_argument("--device", metavar="DEVICE",
                        help="OpenVINO device (openvino backend): CPU (default), GPU, NPU or an indexed one (GPU.1); "
                             "never falls back to another")
        sp.add_argument("--inference-precision", choices=OPENVINO_PRECISIONS,
                        help="OpenVINO inference precision (openvino backend; default: the manifest's hint)")
        sp.add_argument("--engine-cache", metavar="DIR",
                        help="folder for the TensorRT engines (tensorrt backend; default: ARTIFACT/engines)")
        sp.add_argument("--workspace", type=int, metavar="MIB",
                        help="TensorRT builder workspace limit in MiB (tensorrt backend; default: TensorRT's)")

    u = command("run", help="run an exported artifact on images (torch-free)")
    u.add_argument("artifact", help="artifact folder written by `sapiens-edge export`")
    u.add_argument("images", nargs="*", help="image files or folders of them (default: the bundled photo, said so)")
    u.add_argument("--output", "-o", required=True, help="folder for JSON, overlays and arrays")
    backend_args(u, pieces=True)
    u.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the artifact files")
    u.add_argument("--box", type=_parse_box, action="append", help="pose: person box x1,y1,x2,y2")
    u.add_argument("--no-flip", action="store_true", help="pose: disable the flip test")
    u.add_argument("--force", action="store_true", help="replace existing output files")
    u.set_defaults(func=commands["run"])

    v = command("validate", help="compare an artifact with the PyTorch reference (exit 1 on failure)")
    v.add_argument("artifact", help="artifact folder written by `sapiens-edge export`")
    v.add_argument("--weights", help="the weights the artifact was exported from (default: as recorded)")
    v.add_argument("--images", help="folder of test images (default: the bundled photo)")
    v.add_argument("--report", help="write the report here (.json, plus .md beside it)")
    v.add_argument("--force", action="store_true", help="replace an existing report")
    backend_args(v, pieces=True)
    v.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the artifact files")
    v.set_defaults(func=commands["validate"])
    c = command("check", help="check an ONNX artifact against TensorRT's ONNX parser, statically "
                               "(exit 1 with the violations)")
    c.add_argument("artifact", help="artifact folder written by `sapiens-edge export`, or an .onnx file")
    c.add_argument("--tensorrt", required=True, choices=tuple(TENSORRT_RULES),
                   help="TensorRT version (10.3: JetPack 6; 10.13: JetPack 7 / Thor)")
    c.set_defaults(func=commands["check"])

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
                   help="profile which ONNX Runtime provider runs each node, and the precision each OpenVINO op "
                        "runs in (default: on for ONNX Runtime providers other than cpu, and for OpenVINO rows)")
    b.add_argument("--output", "-o", help="folder for bench.json, bench.csv, bench.md and the plots")
    b.add_argument("--no-plots", action="store_true", help="skip the plots (they need matplotlib)")
    b.add_argument("--force", action="store_true",
                   help="replace the outputs of a previous run in --output (its plots are removed)")
    b.set_defaults(func=commands["bench"])

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
    rp.set_defaults(func=commands["report"])
    return p
