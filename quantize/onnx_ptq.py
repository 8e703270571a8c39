"""Post-training int8 quantization of ONNX models with ONNX Runtime's quantizer.

Static QDQ: weights int8 per-channel symmetric, activations uint8 calibrated (U8S8, the layout
ONNX Runtime's CPU kernels are fastest with, VNNI or not). Calibration streams: one image through
the augmented model at a time, and its statistics are folded in before the next one, so memory
stays at one inference whatever the number of images (ONNX Runtime's own `quantize_static` keeps
every intermediate output of every image; at 1024x768 that exhausts 21 GB). A model with over 1 GiB
of weights is calibrated part by part besides (`quantize.onnx_parts`), so that a 1b's calibration holds
one sixth of its weights at a time. The ranges are then handed to `quantize_static` through its
calibration cache.

Dynamic: `quantize_dynamic`, int8 weights and run-time activation ranges; no calibration.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import CalibrationError, SapiensEdgeError
from sapiens_edge.memory import release_memory, trim_heap
from sapiens_edge.quantize import onnx_parts
from sapiens_edge.scratch import scratch_dir

# Ops quantized by default. Attention (fused, opset 23) and the norms stay fp32: ONNX Runtime has no
# int8 kernel for them, and a QDQ pair around them would only add conversions.
STATIC_OPS = ("MatMul", "Gemm", "Conv")
DYNAMIC_OPS = ("MatMul", "Gemm")
# Linears keep fp32 outputs: ONNX Runtime's QGemm/MatMulIntegerToFloat write them directly, whereas a
# quantized output adds a uint8 rounding of every q/k/v, residual and FFN activation (the largest
# int8 error here) and a DequantizeLinear pass (0.3 s of 3.7 s on 0.1b). Conv keeps its uint8
# output, which QLinearConv needs.
FLOAT_OUTPUT_OPS = ("MatMul", "Gemm")
METHODS = ("minmax", "percentile", "entropy")


def _ort_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}
    if name not in table:
        raise SapiensEdgeError(f"Unknown calibration method {name!r}; choose one of {', '.join(METHODS)}.")
    return table[name]


class _OneInput:
    """A CalibrationDataReader that yields one prepared input, then stops."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self._feed = self._feed, None
        return feed

    def __len__(self) -> int:
        return 1


def _calibrator(model_path: Path, op_types: tuple[str, ...], augmented: Path, method: str, percentile: float,
                skip_nodes: frozenset[str] = frozenset()):
    """ONNX Runtime's calibrator for `method`, with the graph augmented but no session yet. Tensors
    that only nodes in `skip_nodes` (left in float) read or write, and the float outputs of
    `FLOAT_OUTPUT_OPS`, are not calibrated: the histogram methods hold every calibrated tensor of an
    image at once, and the seg head's full-resolution activations are the largest."""
    from onnxruntime.quantization import calibrate as C

    common = {"op_types_to_calibrate": list(op_types), "augmented_model_path": str(augmented),
              "use_external_data_format": True}
    if method == "minmax":
        calibrator = C.MinMaxCalibrater(str(model_path), **common)
    elif method == "percentile":
        calibrator = C.PercentileCalibrater(str(model_path), **common, percentile=percentile, num_bins=2048,
                                            symmetric=False)
    elif method == "entropy":
        calibrator = C.EntropyCalibrater(str(model_path), **common, num_bins=128, num_quantized_bins=128)
    else:
        raise SapiensEdgeError(f"Unknown calibration method {method!r}; choose one of {', '.join(METHODS)}.")
    needed = set()
    for node in calibrator.model.graph.node:
        if node.op_type in op_types and node.name not in skip_nodes:
            needed.update(node.input)
            if node.op_type not in FLOAT_OUTPUT_OPS:  # a float output needs no range
                needed.update(node.output)
    select_all = calibrator.select_tensors_to_calibrate

    def select_needed(model):
        tensors, value_infos = select_all(model)
        return {t for t in tensors if t in needed}, value_infos

    calibrator.select_tensors_to_calibrate = select_needed
    calibrator.augment_graph()
    return calibrator


def _calibration_session(path: Path):
    """The augmented model's session, run in graph order. ONNX Runtime's default order (a reverse
    DFS from the outputs) runs the whole model first and every added ReduceMin/ReduceMax last, so
    each calibrated activation lives to the end: 4.9 GB instead of 1.5 GB on 0.1b at 1024x768."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # as ORT's own
    opts.execution_order = onnxruntime.ExecutionOrder.PRIORITY_BASED
    # No arena: it keeps its high-water mark (the attention scratch) for the rest of the export,
    # under the quantizer's own copies of the model.
    opts.enable_cpu_mem_arena = False
    return onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def calibrate(model_path: Path, input_name: str, batches: Callable[[], Iterator[np.ndarray]], count: int, *,
              method: str = "minmax", op_types: tuple[str, ...] = STATIC_OPS, workdir: Path,
              progress: Callable[[str], None] = lambda _: None, percentile: float = 99.999,
              skip_nodes: frozenset[str] = frozenset(), max_part_bytes: int | None = None):
    """Activation ranges (ONNX Runtime `TensorsData`) of `model_path` over the calibration inputs.
    A model with more than `max_part_bytes` of weights (default `onnx_parts.PART_BYTES`) is calibrated part by part
    (`quantize.onnx_parts`): every image through one part before the next part is loaded, so one
    part's weights and activations are held at a time; the ranges are the same."""
    from onnxruntime.quantization.calibrate import TensorsData

    model = onnx_parts.PartedModel(model_path, workdir,
                                   onnx_parts.PART_BYTES if max_part_bytes is None else max_part_bytes)
    parts = model.parts
    release_memory()  # an inline model's weights, read to plan
    if len(parts) == 1:
        ranges, _ = _calibrate_part(model_path, [input_name], _images(batches, input_name), count, method=method,
                                    op_types=op_types, workdir=workdir, progress=progress, percentile=percentile,
                                    skip_nodes=skip_nodes, augmented=workdir / "augmented.onnx")
        return _as_float32(ranges)
    merged: dict[str, Any] = {}
    feeds: Iterable[dict[str, np.ndarray]] = _images(batches, input_name)
    kind = None
    for k, part in enumerate(parts):
        path = model.write(k)  # beside the weights' data file, which its initializers point into
        try:
            label = f"part {k + 1}/{len(parts)}: "
            ranges, crossed = _calibrate_part(
                path, list(part.inputs), feeds, count, method=method, op_types=op_types, workdir=workdir,
                progress=lambda text, label=label: progress(label + text), percentile=percentile,
                skip_nodes=skip_nodes, augmented=workdir / f"augmented{k}.onnx",
                carry=frozenset(part.outputs) if k < len(parts) - 1 else frozenset())
        finally:
            for leftover in (path, *workdir.glob(f"augmented{k}.onnx*")):
                leftover.unlink(missing_ok=True)
        kind = ranges.calibration_method
        for name, value in ranges.items():
            merged.setdefault(name, value)  # a tensor at a cut is seen by both parts, identically
        feeds = crossed
        release_memory()
    return _as_float32(TensorsData(kind, merged))


def _images(batches: Callable[[], Iterator[np.ndarray]], input_name: str) -> Iterator[dict[str, np.ndarray]]:
    for x in batches():
        yield {input_name: np.ascontiguousarray(x, dtype=np.float32)}


class _Tap:
    """The calibration session, keeping a copy of the outputs named in `names` from each run (what
    the next part reads); everything else passes through to ONNX Runtime's session."""

    def __init__(self, session, names: frozenset[str]) -> None:
        self._session, self._names = session, names
        self.taken: list[dict[str, np.ndarray]] = []

    def run(self, output_names, feed, *args, **kwargs):
        results = self._session.run(output_names, feed, *args, **kwargs)
        names = output_names or [o.name for o in self._session.get_outputs()]
        if self._names:
            self.taken.append({n: np.array(v, copy=True) for n, v in zip(names, results, strict=True)
                               if n in self._names})
        return results

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def _calibrate_part(model_path: Path, input_names: list[str], feeds: Iterable[dict[str, np.ndarray]], count: int,
                    *, method: str, op_types: tuple[str, ...], workdir: Path, progress: Callable[[str], None],
                    percentile: float, skip_nodes: frozenset[str], augmented: Path,
                    carry: frozenset[str] = frozenset()):
    """Ranges of one model (or part) over `feeds`, and the `carry` outputs of each feed."""
    calibrator = _calibrator(model_path, op_types, augmented, method, percentile, skip_nodes)
    # After augmenting, the calibrator reads nothing from its ModelProto: swap it for the saved graph
    # without weights. Deleting the initializers in place would not do: protobuf keeps the bytes in
    # the message's arena until the whole message goes (1.5 GiB under the whole calibration of 0.4b).
    calibrator.model = _without_weights(augmented)
    release_memory()
    if method != "minmax":  # the histogram methods read whole activations back
        narrow_outputs(augmented, keep=carry)
    tap = _Tap(_calibration_session(augmented), carry)
    calibrator.infer_session = tap
    # One image at a time, folded into the running statistics before the next (ORT's collect_data
    # keeps what it collected until then; its max_intermediate_outputs option drops data in ORT 1.2x-1.3x).
    t0, seen = time.perf_counter(), 0
    try:
        for feed in feeds:
            feed = {name: feed[name] for name in input_names}
            if method == "minmax":
                calibrator.collect_data(_OneInput(feed))
            else:
                _collect_histograms(calibrator, feed)
            seen += 1
            # The image's activations are freed but glibc keeps the pages (its mmap threshold has risen to
            # their size), and the next image's peak lands on top of them: 1.5 GiB on 0.4b. Arrays hold no
            # cycles: the trim alone, no garbage collection per image (a full one scans the whole heap).
            trim_heap()
            elapsed = time.perf_counter() - t0
            eta = elapsed / seen * (count - seen)
            progress(f"calibrating ({method}) {seen}/{count} images, {elapsed:.0f} s elapsed, ~{eta:.0f} s left")
        if seen == 0:
            raise CalibrationError("The calibration set produced no inputs.")
        collector = getattr(calibrator, "collector", None)
        if method != "minmax" and (collector is None or not collector.histogram_dict):
            # a part with nothing to calibrate (a head left in float), run only for what it hands on
            from onnxruntime.quantization.calibrate import TensorsData

            ranges = TensorsData(_ort_method(method), {})
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # ORT prints its settings here
                ranges = calibrator.compute_data()
    finally:
        calibrator.infer_session = None  # the session and its buffers go before the next part's
    return ranges, tap.taken


def _without_weights(path: Path):
    """The ModelProto at `path` without its initializers (nor their external data)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    del proto.graph.initializer[:]
    return proto


def _collect_histograms(calibrator, feed: dict[str, np.ndarray]) -> None:
    """What the histogram calibrators' `collect_data` does for one image, one activation at a time:
    each float16 output is widened to float32 and folded into its histogram on its own, so the
    image's activations are held once, in float16 (`collect_data` stacks every output of the image
    into new arrays while the session's results are still alive)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    session = calibrator.infer_session
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(None, feed)
    if calibrator.collector is None:  # as collect_data creates it
        calibrator.collector = HistogramCollector(
            method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
            num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
            scenario=calibrator.scenario)
    wanted = calibrator.tensors_to_calibrate
    with contextlib.redirect_stdout(io.StringIO()):  # the collector prints a line per call
        for k, name in enumerate(names):
            value, outputs[k] = outputs[k], None
            if name in wanted:
                calibrator.collector.collect({name: [np.asarray(value, dtype=np.float32)]})
            del value


def narrow_outputs(path: Path, keep: frozenset[str] = frozenset()) -> int:
    """Make the augmented model hand its calibrated activations back as float16 (a Cast in the
    graph, under the same names). The histogram methods get every calibrated activation of an image
    at once: 2.1 GB for 0.4b at 1024x768, the largest part of calibration's peak, halved. Rounding
    to fp16 moves a value by at most 2^-11 of itself, far below a uint8 step (1/255 of the range),
    so the histograms and the ranges drawn from them do not change in any way that matters.
    Graph inputs (the image) stay float32, and so do the outputs in `keep` (what the next part of a
    model calibrated part by part reads: rounded, they would change its activations). Returns how many
    outputs were narrowed."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(path), load_external_data=False)  # the weights stay in their data file
    graph = proto.graph
    graph_inputs = {i.name for i in graph.input}
    producers = {out: node for node in graph.node for out in node.output}
    narrowed = 0
    casts = []
    for out in graph.output:
        name = out.name
        if out.type.tensor_type.elem_type != TensorProto.FLOAT or name in graph_inputs or name in keep \
                or name not in producers:
            continue
        wide = name + "__fp32"
        node = producers[name]
        node.output[list(node.output).index(name)] = wide
        for other in graph.node:
            for k, i in enumerate(other.input):
                if i == name:
                    other.input[k] = wide
        for info in graph.value_info:
            if info.name == name:
                info.name = wide
        casts.append(helper.make_node("Cast", [wide], [name], to=TensorProto.FLOAT16, name=name + "__to_fp16"))
        out.type.tensor_type.elem_type = TensorProto.FLOAT16
        narrowed += 1
    graph.node.extend(casts)  # ORT sorts nodes topologically itself; PRIORITY_BASED runs each cast early
    onnx.save(proto, str(path))
    return narrowed


def _as_float32(data):
    """Ranges from float16 activations come out as float16: the quantizer wants float32 scales."""
    for _, tensor in data.items():
        for attr in ("avg", "std", "lowest", "highest", "hist_edges"):
            value = getattr(tensor, attr, None)
            if value is not None and getattr(value, "dtype", None) == np.float16:
                setattr(tensor, attr, value.astype(np.float32))
    return data


def quantize_static(model_path: Path, output: Path, input_name: str, batches: Callable[[], Iterator[np.ndarray]],
                    count: int, *, method: str = "minmax", op_types: tuple[str, ...] = STATIC_OPS,
                    external_data: bool = False, nodes_to_exclude: list[str] | None = None,
                    progress: Callable[[str], None] = lambda _: None, symmetric_int8: bool = False) -> dict[str, Any]:
    """Calibrate (streaming) and write a static QDQ int8 model to `output`; returns the settings.
    `nodes_to_exclude`: node names left in float. `symmetric_int8`: TensorRT's explicit quantization
    instead of U8S8: int8 activations with zero point 0, and biases left in float (no int32 bias
    DequantizeLinear, which TensorRT rejects; it adds the bias after the int8 GEMM itself)."""
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    with scratch_dir(output.parent, "sapiens-calib") as tmp:
        ranges = calibrate(model_path, input_name, batches, count, method=method, op_types=op_types,
                           workdir=Path(tmp), progress=progress, skip_nodes=frozenset(nodes_to_exclude or ()))
        release_memory()  # the calibration session's buffers, before the quantizer's model copies
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        progress("inserting QDQ nodes (ONNX Runtime quantizer) ...")
        ort_quantize_static(str(model_path), str(output), calibration_data_reader=None,
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=True,
                            activation_type=QuantType.QInt8 if symmetric_int8 else QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=_ort_method(method), calibration_cache_path=cache,
                            use_external_data_format=external_data, nodes_to_exclude=nodes_to_exclude or [],
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": symmetric_int8,
                                           "QuantizeBias": not symmetric_int8,
                                           "OpTypesToExcludeOutputQuantization": list(FLOAT_OUTPUT_OPS)})
    info = {"quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ", "weights": "int8 per-channel "
            "symmetric", "activations": "uint8 asymmetric, calibrated", "calibration_method": method,
            "op_types": list(op_types)}
    if symmetric_int8:
        info.update(activations="int8 symmetric (zero point 0), calibrated per tensor", bias="float")
    return info


def quantize_dynamic(model_path: Path, output: Path, *, op_types: tuple[str, ...] = DYNAMIC_OPS,
                     external_data: bool = False) -> dict[str, Any]:
    """Write a dynamic int8 model (int8 per-channel weights, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    ort_quantize_dynamic(str(model_path), str(output), op_types_to_quantize=list(op_types), per_channel=True,
                         weight_type=QuantType.QInt8, use_external_data_format=external_data)
    return {"quantizer": "onnxruntime.quantization.quantize_dynamic", "weights": "int8 per-channel",
            "activations": "uint8, quantized at run time", "op_types": list(op_types)}
