"""int8 of the ONNX target (`onnx-int8`, `onnx-int8-dynamic`): the fp32 graph quantized from disk by ONNX
Runtime's quantizer (`sapiens_edge.quantize.onnx_ptq`), the layers kept in float stored in fp16.

Two routes write that fp32 graph: in memory (`export.onnx.lower`, onnxslim'd, up to 0.4b) and, for large
models, streamed (`lower_streamed`: one copy of the fp32 weights, rewritten and GPTQ-rounded in place,
written to disk tensor by tensor; calibration and the quantizer then read it from disk).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.memory import release_memory
from sapiens_edge.scratch import scratch_dir

from .onnx import MODEL_FILE, OPSET, as_lowered, graph_output_specs, save
from .onnx_float import float_nodes
from .recipes import ActivationKind, Recipe
from .target_table import require_calibration
from .targets import INPUT_NAME, CalibrationData, Lowered


def lower_streamed(model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
                   calibration: CalibrationData | None, progress: Callable[[str], None]) -> Lowered:
    """int8 of a large model: the fp32 graph streamed to disk with one copy of the weights (rewritten and
    GPTQ-rounded in place), then calibrated and quantized from disk as on the in-memory route."""
    from .onnx_streamed import write_int8_source

    static_int8 = recipe.activations.kind is ActivationKind.STATIC_INT8
    if static_int8:
        calibration = require_calibration(recipe, calibration)
    out = workdir / MODEL_FILE
    with scratch_dir(workdir.parent, "sapiens-onnx") as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        proto, done, rounding = write_int8_source(model, recipe, input_hw, fp32_path, OPSET, calibration, progress)
        outputs = graph_output_specs(proto)
        # The initializers carry the parameters' names here (no onnxslim renaming): no value matching needed.
        keep = float_nodes(proto, model.sapiens_info.task, calibration.keep_float) if static_int8 else []
        del proto
        release_memory()
        options: dict[str, Any] = {"opset": OPSET, "exporter": "torch.onnx.export(dynamo=True)",
                                   "rewrites": list(recipe.rewrites), "pipeline": "streamed", "simplifier": None,
                                   "rope": "fp32", **done,
                                   **quantize(fp32_path, out, recipe, calibration, keep, done["external_data"],
                                              progress)}
        options["weight_rounding"] = rounding
    return as_lowered(input_hw, out, options, outputs)


def quantize(fp32_path: Path, out: Path, recipe: Recipe, calibration: CalibrationData | None, keep: list[str],
             big: bool, progress: Callable[[str], None], decoding: list[str] = ()) -> dict[str, Any]:
    """Quantize the fp32 graph at `fp32_path` into `out` (ONNX Runtime's quantizer); returns the options.
    `keep`: layers left float, their weights stored fp16; `decoding`: `--decode`'s nodes, left float in fp32."""
    import onnx

    from sapiens_edge.quantize import onnx_ptq

    if recipe.activations.kind is ActivationKind.STATIC_INT8:
        method = calibration.method or recipe.default_calibration_method
        info = onnx_ptq.quantize_static(fp32_path, out, INPUT_NAME, calibration.batches, calibration.count,
                                        method=method, op_types=onnx_ptq.STATIC_OPS, external_data=big,
                                        nodes_to_exclude=[*keep, *decoding], progress=progress)
        info["kept_float"] = [*keep, *decoding]
        info.update(store_float_weights_fp16(out, keep))
    else:
        progress("quantizing (dynamic int8) ...")
        info = onnx_ptq.quantize_dynamic(fp32_path, out, external_data=big)
    onnx.checker.check_model(str(out))
    return {"quantization": info}


def store_float_weights_fp16(path: Path, nodes: list[str], min_elements: int = 1024) -> dict[str, Any]:
    """Store the weights of `nodes` (the layers static int8 leaves in float) in fp16, each behind a
    Cast to fp32: the layers still compute in fp32 (ONNX Runtime folds the Casts when it loads the
    model), and the file loses half of their bytes. Rounding a weight to fp16 moves it by at most
    2^-11 of itself, ~1/500 of an int8 step of the same weight. On 0.4b seg the head's fp32 weights
    kept the int8 file at 0.28x of fp32 (issue target 0.27x). Returns what was converted."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    wanted = set(nodes)
    casts, converted, saved = [], [], 0
    for node in graph.node:
        if node.name not in wanted or len(node.input) < 2:
            continue
        tensor = inits.pop(node.input[1], None)  # popped: a weight shared by two kept nodes converts once
        if tensor is None or tensor.data_type != TensorProto.FLOAT or np.prod(tensor.dims) < min_elements:
            continue
        value = numpy_helper.to_array(tensor)
        half = numpy_helper.from_array(value.astype(np.float16), tensor.name + "__fp16")
        graph.initializer.remove(tensor)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT,
                                      name=tensor.name + "__to_fp32"))
        converted.append(node.name)
        saved += value.nbytes // 2
    for cast in reversed(casts):  # before every consumer
        graph.node.insert(0, cast)
    save(proto, path)
    return {"float_weights_storage": "float16 (Cast to float32 at load)", "fp16_stored_layers": len(converted),
            "fp16_saved_mib": round(saved / 2**20, 1)}
