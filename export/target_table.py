"""What each export target supports, as data: the precisions it lowers, its delegates, deployment
targets and options (with defaults), the Python modules and tool versions it needs, and where its
artifacts run. `check_request` holds an export request against it before any weights load.

Torch-free, like the recipe table: `sapiens-edge recipes` and the docs generator read it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from sapiens_edge.errors import CalibrationError, RecipeError

from .recipes import ActivationKind, Granularity, Rounding

if TYPE_CHECKING:
    from .recipes import Recipe
    from .targets import CalibrationData

ANYWHERE = "anywhere"
APPLE = "Apple devices only"
OPENVINO = "x86-64/ARM64 CPUs, Intel GPUs/NPUs"


@dataclass(frozen=True)
class Delegate:
    requires: tuple[str, ...] = ()  # Python modules it needs on top of the target's
    precisions: tuple[str, ...] | None = None  # None: every precision the target takes
    runs_on: str | None = None  # None: where the target's artifacts run
    decode: bool = True  # whether it lowers decoded outputs (when its target does)


@dataclass(frozen=True)
class TargetSpec:
    name: str
    module: str  # lazy import path of the module whose lower() writes the artifact (export.targets.Target)
    artifact: str  # what it writes
    precisions: tuple[str, ...]  # Recipe.precision labels it lowers
    requires: tuple[str, ...]  # Python modules every recipe of the target needs
    extra: str  # the pip extra that provides them
    tools: dict[str, str]  # distribution -> the versions it works with (pyproject.toml), checked when installed
    runs_on: str = ANYWHERE
    calibrated_requires: tuple[str, ...] = ()  # extra modules when activations are calibrated (PT2E)
    gptq: tuple[str, ...] = ()  # precisions whose weights may be GPTQ-rounded
    int8_granularity: tuple[Granularity, ...] = (Granularity.PER_CHANNEL,)
    dynamic_layers: bool = False  # whether dynamic int8 may be limited to some layers (the rest static)
    delegates: dict[str, Delegate] = field(default_factory=lambda: {"": Delegate()})  # the first is the default
    deployment_targets: tuple[str, ...] = ()  # Core ML minimum OS versions, the default first
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --target-option KEY: values, default first
    # Decoded outputs (export.decode, --decode): whether the target lowers them, and the dtype of seg's class ids.
    decode: bool = True
    decode_labels: str = "uint8"


TARGETS: dict[str, TargetSpec] = {t.name: t for t in [
    TargetSpec("onnx", "sapiens_edge.export.onnx", "model.onnx (+ model.onnx.data)",
               ("fp32", "fp16", "int8", "int8-dynamic"), ("onnx", "onnxruntime", "onnxscript"), "onnx",
               {"torch": ">=2.5", "onnx": ">=1.17", "onnxruntime": ">=1.20", "onnxscript": ">=0.2",
                "onnxslim": ">=0.1.50"}, gptq=("int8",),
               # tensorrt: ONNX made for TensorRT's parser (export.onnx_tensorrt); it runs in ONNX Runtime too.
               # Not decoded: its fp16 and int8 routes cast every float op and output to fp16 (the decoding's
               # DARK step too), and integer class ids would be an engine output TensorRT 10.3 has not been
               # checked with.
               delegates={"": Delegate(), "tensorrt": Delegate(precisions=("fp32", "fp16", "int8"), decode=False)},
               # auto: large float models take the streamed route (export.onnx_streamed); opset / contrib_ops:
               # for an older ONNX Runtime on the device (export.runtime_pins), default delegate only.
               options={"pipeline": ("auto", "in-memory", "streamed"),
                        "opset": ("23", "22", "21", "20", "19", "18", "17"), "contrib_ops": ("yes", "no")}),
    TargetSpec("executorch", "sapiens_edge.export.executorch", "model.pte", ("fp32", "fp16", "int8"),
               ("executorch",), "executorch",
               {"torch": ">=2.5", "executorch": "==1.5.1"},
               calibrated_requires=("torchao",), gptq=("int8",), dynamic_layers=True,
               delegates={"xnnpack": Delegate(),
                          "coreml": Delegate(("coremltools",), ("fp32", "fp16"), APPLE)},
               deployment_targets=("iOS17", "iOS18")),
    TargetSpec("coreml", "sapiens_edge.export.coreml", "model.mlpackage",
               ("fp32", "fp16", "int8-weights", "int8", "palettized-4bit", "palettized-6bit", "palettized-8bit"),
               ("coremltools",), "coreml", {"torch": ">=2.5", "coremltools": ">=9.0,<10"}, runs_on=APPLE,
               calibrated_requires=("executorch", "torchao"),
               gptq=("int8", "palettized-4bit", "palettized-6bit", "palettized-8bit"),
               deployment_targets=("iOS16", "iOS17", "iOS18"), options={"input": ("image", "tensor")},
               # Its fp16 compute precision would also take the decoding (DARK's log map) to fp16, and an
               # ML Program's outputs are not uint8: not built yet.
               decode=False, decode_labels="int32"),
    TargetSpec("tflite", "sapiens_edge.export.tflite", "model.tflite", ("fp32", "fp16", "int8", "int8-dynamic"),
               ("litert_torch", "ai_edge_litert"), "tflite",
               {"torch": ">=2.5", "litert-torch": "==0.10.0", "ai-edge-litert": ">=2.3,<2.4"},
               calibrated_requires=("torchao",), gptq=("int8",)),
    TargetSpec("openvino", "sapiens_edge.export.openvino", "model.xml + model.bin", ("fp32", "fp16", "int8"),
               ("openvino",), "openvino", {"torch": ">=2.5", "openvino": ">=2026.0", "nncf": ">=3.0"},
               runs_on=OPENVINO, calibrated_requires=("nncf",), gptq=("int8",)),
]}


def requirements(recipe: Recipe) -> tuple[str, ...]:
    """The Python modules `recipe` needs: its target's, its delegate's, and PT2E's when it calibrates."""
    spec = TARGETS[recipe.target]
    delegate = spec.delegates.get(recipe.lowering.delegate or next(iter(spec.delegates)), Delegate())
    calibrated = spec.calibrated_requires if recipe.activations.calibrated else ()
    return tuple(dict.fromkeys((*spec.requires, *delegate.requires, *calibrated)))


def tool_problems(recipe: Recipe) -> list[str]:
    """'needs executorch==1.5.1, found 1.4.0' for each installed tool of the recipe's target outside the
    declared versions (a tool not installed is `requirements`' business)."""
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # packaging comes with pip and setuptools; without it, no check
        return []
    out = []
    for name, spec in TARGETS[recipe.target].tools.items():
        try:
            found = version(name)
        except PackageNotFoundError:
            continue
        if not SpecifierSet(spec, prereleases=True).contains(found.split("+")[0]):
            out.append(f"needs {name}{spec}, found {found}")
    return out


def runs_on(recipe: Recipe) -> str:
    spec = TARGETS[recipe.target]
    delegate = spec.delegates.get(recipe.lowering.delegate or next(iter(spec.delegates)), Delegate())
    return delegate.runs_on or spec.runs_on


def delegate_of(recipe: Recipe) -> str:
    """The recipe's delegate, or its target's default."""
    return recipe.lowering.delegate or next(iter(TARGETS[recipe.target].delegates))


def check_recipe(recipe: Recipe) -> None:
    """RecipeError unless `recipe`'s parts are what its target declares it lowers."""
    spec = TARGETS.get(recipe.target)
    if spec is None:
        raise RecipeError(f"Recipe {recipe.name!r} names target {recipe.target!r}; known targets: "
                          f"{', '.join(TARGETS)} (export.target_table.TARGETS).")
    fix = f"change recipe {recipe.name!r} or declare it in export.target_table.TARGETS[{spec.name!r}]"
    delegate = delegate_of(recipe)
    if delegate not in spec.delegates:
        raise RecipeError(f"The {spec.name} target has no delegate {delegate!r} (its delegates: "
                          f"{', '.join(d for d in spec.delegates if d) or 'none'}); {fix}.")
    allowed = spec.delegates[delegate].precisions or spec.precisions
    if recipe.precision not in allowed:
        via = f" with the {delegate} delegate" if delegate else ""
        raise RecipeError(f"The {spec.name} target{via} lowers {', '.join(allowed)}, not {recipe.precision} "
                          f"(recipe {recipe.name!r}); {fix}.")
    w, a = recipe.weights, recipe.activations
    if recipe.weights.rounding is Rounding.GPTQ and recipe.precision not in spec.gptq:
        raise RecipeError(f"The {spec.name} target GPTQ-rounds only {', '.join(spec.gptq) or 'nothing'}, not "
                          f"{recipe.precision} (recipe {recipe.name!r}); {fix}.")
    if recipe.precision in ("int8", "int8-dynamic", "int8-weights") and w.granularity not in spec.int8_granularity:
        granularity = w.granularity.value if w.granularity else "no granularity"
        raise RecipeError(f"The {spec.name} target quantizes int8 weights "
                          f"{' or '.join(g.value for g in spec.int8_granularity)}, not {granularity} "
                          f"(recipe {recipe.name!r}); {fix}.")
    if recipe.precision.startswith("palettized-") and not (w.granularity is Granularity.PER_GROUP and w.group_size):
        raise RecipeError(f"Recipe {recipe.name!r}: palettized weights take one LUT per group of output channels "
                          f"(granularity per-group with a group_size).")
    if a.dynamic_layers and not (a.kind is ActivationKind.DYNAMIC_INT8 and spec.dynamic_layers):
        raise RecipeError(f"The {spec.name} target cannot limit dynamic int8 to some layers "
                          f"(recipe {recipe.name!r}: dynamic_layers); {fix}.")
    if a.kind is ActivationKind.DYNAMIC_INT8 and spec.dynamic_layers and not a.dynamic_layers:
        raise RecipeError(f"The {spec.name} target needs dynamic_layers for dynamic int8 (the other layers are "
                          f"calibrated static) (recipe {recipe.name!r}); {fix}.")
    if a.calibrated and not a.calibration_methods:
        raise RecipeError(f"Recipe {recipe.name!r} calibrates activations but lists no calibration methods.")
    target = recipe.lowering.deployment_target
    if target is not None and target not in spec.deployment_targets:
        raise RecipeError(f"Recipe {recipe.name!r}: deployment target {target!r} is not one of the {spec.name} "
                          f"target's ({', '.join(spec.deployment_targets) or 'none'}); {fix}.")


def deployment_target(recipe: Recipe) -> str:
    """The recipe's minimum OS for Core ML, or its target's default (the first it declares)."""
    return recipe.lowering.deployment_target or TARGETS[recipe.target].deployment_targets[0]


def check_request(recipe: Recipe, calibration_method: str | None = None, keep_float: tuple[str, ...] = (),
                  target_options: dict[str, str] | None = None, decode: bool = False) -> dict[str, str]:
    """Hold an export request against `recipe` and its target's declaration (RecipeError saying what to
    do). Returns the target options with the target's defaults filled in."""
    from .recipes import RECIPES

    check_recipe(recipe)
    spec = TARGETS[recipe.target]
    if decode and not (spec.decode and spec.delegates[delegate_of(recipe)].decode):
        takes = ", ".join(t.name for t in TARGETS.values() if t.decode)
        via = f" with the {delegate_of(recipe)} delegate" if delegate_of(recipe) else ""
        raise RecipeError(f"The {recipe.target} target{via} (recipe {recipe.name!r}) does not lower decoded outputs "
                          f"(--decode); export without it, or with a recipe of {takes} (default delegates).")
    if decode and (target_options or {}).get("pipeline") == "streamed":
        raise RecipeError("--decode needs the in-memory ONNX route; leave out --target-option pipeline=streamed.")
    if calibration_method is not None and calibration_method not in recipe.calibration_methods:
        choices = ", ".join(recipe.calibration_methods) or (
            "none to choose: it uses the calibration images for GPTQ only" if recipe.needs_calibration
            else "none: it needs no calibration")
        raise RecipeError(f"Recipe {recipe.name!r} has no calibration method {calibration_method!r} ({choices}).")
    if keep_float and not recipe.needs_calibration:
        calibrated = ", ".join(r for r, x in RECIPES.items() if x.needs_calibration)
        raise RecipeError(f"Recipe {recipe.name!r} quantizes nothing statically; --keep-float applies to the "
                          f"calibrated int8 and palettized recipes ({calibrated}).")
    allowed = TARGETS[recipe.target].options
    for key, value in (target_options or {}).items():
        if key not in allowed:
            valid = ", ".join(f"{k}={'|'.join(v)}" for k, v in allowed.items()) or "none"
            raise RecipeError(f"The {recipe.target} target (recipe {recipe.name!r}) has no option {key!r}; "
                              f"its options: {valid}.")
        if value not in allowed[key]:
            raise RecipeError(f"Option {key}={value!r} for the {recipe.target} target must be one of "
                              f"{', '.join(allowed[key])}.")
    return {**{k: v[0] for k, v in allowed.items()}, **(target_options or {})}


def tool_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of `distributions` for the manifest (those not installed are left out)."""
    out = {}
    for name in distributions:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def require_calibration(recipe: Recipe, calibration: CalibrationData | None, why: str = "") -> CalibrationData:
    """`calibration`, or a CalibrationError when a calibrating recipe is lowered without it (a direct
    call of a target's lower(); export() always builds it for such recipes)."""
    if calibration is None:
        raise CalibrationError(f"{recipe.name} needs calibration data{why}: export it with export() (the built-in "
                               f"set, or calibration=DIR), or pass a CalibrationData.")
    return calibration
