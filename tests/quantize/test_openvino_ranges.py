"""mean-quantile activation ranges computed in the OpenVINO graph (quantize.openvino_ranges): the order
statistics against numpy's quantile, and the ranges of a whole quantized tiny seg IR against NNCF's own
mean-quantile on the same model and images."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

import nncf
import openvino as ov
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
from nncf.quantization.range_estimator import RangeEstimatorParametersSet

from sapiens_edge.quantize.openvino_ranges import OUTLIER_PROB, in_graph_quantiles, order_statistics, quantile_from_top
from tests.export.shared import photo_input, tiny_model


@pytest.mark.parametrize("count", [2, 3, 17, 1000, 12345, 3 * 64 * 48])
@pytest.mark.parametrize("q", [OUTLIER_PROB, 0.01, 0.3])
def test_quantile_from_the_extreme_values_is_numpys(count, q):
    x = np.random.default_rng(count).standard_t(3, count).astype(np.float32)
    for upper in (True, False):
        k, frac = order_statistics(count, 1 - q if upper else q)
        top = np.sort(x)[::-1][:k] if upper else np.sort(x)[:k]
        want = np.quantile(x.astype(np.float64), 1 - q if upper else q)
        assert quantile_from_top(top, frac) == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert k <= q * count + 2  # a few values per tensor, not the tensor


def _quantize(ir, images, estimator):
    return nncf.quantize(ir, nncf.Dataset(images), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(images),
                         advanced_parameters=AdvancedQuantizationParameters(
                             activations_range_estimator_params=estimator,
                             smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)))


def _ranges(model) -> dict[str, tuple[float, float, int]]:
    """Activation FakeQuantize -> (input low, input high, levels), keyed by the op output it reads."""
    out = {}
    for fq in model.get_ordered_ops():
        src = fq.input_value(0) if fq.get_type_name() == "FakeQuantize" else None
        if src is None or src.get_node().get_type_name() == "Constant":
            continue
        lo, hi, olo, ohi = (float(np.asarray(fq.input_value(i).get_node().get_data()).reshape(-1)[0])
                            for i in range(1, 5))
        assert (lo, hi) == (olo, ohi)
        out[f"{src.get_node().get_friendly_name()}:{src.get_index()}"] = (lo, hi, int(fq.get_attributes()["levels"]))
    return out


@pytest.fixture(scope="module")
def tiny_ir():
    """The tiny seg model converted to OpenVINO IR, and three calibration images."""
    import torch
    from openvino.frontend.pytorch.fx_decoder import TorchFXPythonDecoder

    from sapiens_edge.export.capture import capture

    model = tiny_model("seg")
    hw = model.sapiens_info.input_hw
    x = photo_input("seg", hw)
    noisy = (0.7 * x + 0.3 * np.random.default_rng(0).standard_normal(x.shape)).astype(np.float32)
    with torch.no_grad():
        program = capture(model, hw, exact_rope=False)
    ir = ov.convert_model(TorchFXPythonDecoder.from_exported_program(program, dynamic_shapes=False))
    return ir, [x, x[..., ::-1].copy(), noisy]


def test_in_graph_mean_quantile_is_nncfs(monkeypatch, tiny_ir):
    """The tiny seg IR quantized by NNCF with mean-quantile ranges: with the quantiles computed in the graph,
    every activation range is NNCF's own (1e-5 relative; NNCF's numpy sorts float32), while OpenVINO hands
    NNCF a few numbers per activation instead of the activations (the memory this saves). The ranges also
    differ from min/max ones, so the comparison can fail."""
    from nncf.openvino.engine import OVNativeEngine

    ir, images = tiny_ir
    returned = []  # per inference: (outputs, bytes) OpenVINO hands NNCF besides the model's own outputs
    infer = OVNativeEngine.infer
    outputs = {name for port in ir.outputs for name in port.get_names()}

    def counting_infer(self, data):
        out = infer(self, data)
        returned.append((len(out), sum(np.asarray(v).nbytes for k, v in out.items() if k not in outputs)))
        return out

    monkeypatch.setattr(OVNativeEngine, "infer", counting_infer)
    stock = _ranges(_quantize(ir, images, RangeEstimatorParametersSet.MEAN_QUANTILE))
    stock_bytes, returned[:] = max(returned)[1], []  # the statistics pass: the most outputs
    with in_graph_quantiles():
        ours = _ranges(_quantize(ir, images, RangeEstimatorParametersSet.MEAN_QUANTILE))
    ours_bytes = max(returned)[1]
    from nncf.openvino.statistics import collectors  # NNCF's registry is back as it was
    assert collectors.OVQuantileReducer in collectors.OV_REDUCERS_MAP.values()
    minmax = _ranges(_quantize(ir, images, RangeEstimatorParametersSet.MINMAX))

    assert ours.keys() == stock.keys() == minmax.keys() and len(stock) > 10
    for key, (lo, hi, levels) in stock.items():
        assert ours[key][2] == levels
        assert ours[key][:2] == pytest.approx((lo, hi), rel=1e-5, abs=1e-7), key
    assert sum(minmax[k][1] > 1.01 * stock[k][1] for k in stock) > len(stock) // 2  # quantiles clip the tails
    assert ours_bytes * 10 < stock_bytes, (ours_bytes, stock_bytes)


def test_per_channel_quantiles_are_refused_not_miscomputed():
    """min_max asks per-tensor quantiles; a reduction that keeps a channel axis would need one TopK per channel,
    which quantile_op does not build: it must say so instead of returning one number for all channels."""
    import openvino.opset13 as ops

    from sapiens_edge.quantize.openvino_ranges import _reducer_class

    x = ops.parameter([1, 4, 6], np.float32)
    reducer = _reducer_class()(axes=(0, 2), quantile=[0.99])
    with pytest.raises(RuntimeError, match="not implemented"):
        reducer.get_inplace_fn()(x, 0, "per_channel")
    per_tensor = _reducer_class()(axes=(0, 1, 2), quantile=[0.99])
    node = per_tensor.get_inplace_fn()(x, 0, "per_tensor")
    assert list(node.get_output_shape(0)) == [1, 1, 1] and node.get_friendly_name() == "per_tensor"


def test_registry_is_restored_after_an_error_and_checked_before_use(monkeypatch):
    from nncf.openvino.statistics import collectors

    before = dict(collectors.OV_REDUCERS_MAP)
    with pytest.raises(ValueError), in_graph_quantiles():
        assert collectors.OVQuantileReducer not in collectors.OV_REDUCERS_MAP.values()
        raise ValueError("a failed nncf.quantize")
    assert dict(collectors.OV_REDUCERS_MAP) == before
    # An NNCF whose registry no longer holds the quantile reducer (its internals moved): refuse, change nothing.
    monkeypatch.setattr(collectors, "OV_REDUCERS_MAP",
                        {k: v for k, v in before.items() if v is not collectors.OVQuantileReducer})
    with pytest.raises(RuntimeError, match="no single quantile reducer"), in_graph_quantiles():
        pass
    assert collectors.OVQuantileReducer not in collectors.OV_REDUCERS_MAP.values()


def _gaps(compiled) -> list[int]:
    """Per reduction of a compiled statistics model: how many execution steps after the op it reads it runs."""
    gaps = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        if str(op.get_rt_info()["layerType"].astype(str)) == "Reduce":
            step = int(op.get_rt_info()["execOrder"].astype(str))
            gaps.append(step - int(op.input_value(0).get_node().get_rt_info()["execOrder"].astype(str)))
    return sorted(gaps)


def test_statistics_run_beside_the_activations_they_read(monkeypatch, tiny_ir):
    """NNCF's statistics model as compiled: left as NNCF builds it, OpenVINO's CPU plugin runs the reductions after
    the whole network (each activation held until then: the memory this saves, docs/targets/openvino.md); with
    statistics_beside_producers, right after the op they read. The ranges are the same to the last bit."""
    from nncf.openvino.engine import OVNativeEngine

    from sapiens_edge.quantize.openvino_ranges import statistics_beside_producers

    ir, images = tiny_ir
    compiled = []
    init = OVNativeEngine.__init__

    def keep(self, model, *args, **kwargs):
        init(self, model, *args, **kwargs)
        compiled.append(self.engine.infer_request.get_compiled_model())

    monkeypatch.setattr(OVNativeEngine, "__init__", keep)
    stock = _ranges(_quantize(ir, images, RangeEstimatorParametersSet.MEAN_MINMAX))
    stock_gaps = _gaps(max(compiled, key=lambda c: len(c.outputs)))
    compiled.clear()
    with statistics_beside_producers(ir):
        ours = _ranges(_quantize(ir, images, RangeEstimatorParametersSet.MEAN_MINMAX))
    ours_gaps = _gaps(max(compiled, key=lambda c: len(c.outputs)))
    assert OVNativeEngine.__init__ is keep  # the engine is back as it was
    assert ours == stock and len(stock) > 10
    assert len(ours_gaps) == len(stock_gaps) > 20
    n = len(stock_gaps)
    assert stock_gaps[n // 2] > 100, stock_gaps  # the median reduction waits for most of the network ...
    # ... and now the median one runs within a few steps of its activation, the latest in a tenth of that wait
    # (tiny seg: 537 steps for the median before, 2 after, the latest 18-22)
    assert ours_gaps[n // 2] <= 5 and ours_gaps[-1] * 10 < stock_gaps[n // 2], (stock_gaps, ours_gaps)


def test_producers_first_orders_outputs_and_keeps_the_nodes():
    import openvino.opset13 as ops

    from sapiens_edge.quantize.openvino_ranges import producers_first

    x = ops.parameter([1, 8], np.float32, name="x")
    a = ops.relu(x)
    b = ops.sigmoid(a)
    out = ops.result(b)
    out.output(0).set_names({"y"})
    stats = [ops.result(ops.reduce_max(a, np.array([0, 1]), keep_dims=True, name="max_a")),
             ops.result(ops.reduce_max(b, np.array([0, 1]), keep_dims=True, name="max_b"))]
    model = ov.Model([out, *stats], [x])
    reordered = producers_first(model, {"y"})
    names = [r.input_value(0).get_node().get_friendly_name() for r in reordered.get_results()]
    assert sorted(names[:2]) == ["max_a", "max_b"] and names[2] == b.get_friendly_name()  # the model's own last
    assert len(reordered.get_ordered_ops()) == len(model.get_ordered_ops())  # the same graph, outputs reordered
    assert producers_first(reordered, {"y"}) is reordered  # already in order: returned as it is


@pytest.mark.parametrize("shape", [(1, 64, 4096), (3, 5, 7)])
@pytest.mark.parametrize("q", [OUTLIER_PROB, 1 - OUTLIER_PROB, 0.3])
def test_quantile_op_in_chunks_is_numpys(shape, q):
    """quantile_op as OpenVINO runs it, on a large tensor (its TopK split into 64 chunks in a TensorIterator)
    and a small one (one TopK), against numpy's quantile of the same values."""
    import openvino.opset13 as ops

    from sapiens_edge.quantize.openvino_ranges import _chunks, quantile_op

    x = ops.parameter(list(shape), np.float32)
    model = ov.Model([ops.result(quantile_op(x.output(0), q, "q"))], [x])
    count = int(np.prod(shape))
    assert (_chunks(count, order_statistics(count, q)[0]) > 1) == (count > 4096)  # 64 chunks, 2 for q = 0.3
    data = np.random.default_rng(count).standard_t(3, shape).astype(np.float32)
    got = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({0: data})[0]
    assert got.shape == (1,) * len(shape)
    assert float(got.reshape(-1)[0]) == pytest.approx(np.quantile(data.astype(np.float64), q), rel=1e-6, abs=1e-7)
