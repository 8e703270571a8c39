"""NNCF's `mean-quantile` activation ranges, computed in the OpenVINO graph instead of numpy.

NNCF reduces min/max statistics inside the OpenVINO graph, but quantiles outside it: for each
calibration image it asks OpenVINO for every quantized activation whole (0.4b at 1024x768: ~2.7 GB of
q/k/v, FFN and attention inputs per image) and sorts copies of them, which took the 0.4b export from
8.0 to 15.8 GiB. The same estimator fits in the graph: the q-quantile of N values, with numpy's linear
interpolation, lies between the order statistics t = q (N - 1) places from the end and the next one, so
a TopK of the k = floor(t) + 2 most extreme values holds it exactly and each image returns one number
per activation.

`in_graph_quantiles()` gives NNCF's OpenVINO backend that reducer for the duration of a
`nncf.quantize` call; everything else (where the FakeQuantize ops go, symmetric or asymmetric ranges,
zero-point tuning, scales unified across a concat's inputs, the mean over images) stays NNCF's own.
NNCF's reducer registry is internal API, so tests/quantize/test_openvino_ranges.py checks the result
against NNCF's own mean-quantile on a tiny model, range by range.

OpenVINO's CPU TopK keeps a scratch buffer the size of its input for each TopK node, so a large activation's
TopK runs in chunks inside a TensorIterator (scratch: one chunk).

`statistics_beside_producers()` is the other half, for every estimator: NNCF's statistics model lists its
reductions' outputs after the model's own, and OpenVINO's CPU plugin then runs all of them after the whole
network, so every activation they read stays allocated until the end (0.4b at 1024x768: +3.8 GiB where the
model alone adds ~0.7). Listed first, deepest first, they run right after their producers and the memory is
reused (0.1b statistics model: 3.3 -> 1.8 GiB, the plain model's 1.8). Only the order of the outputs changes;
NNCF reads them by name.

Measured on 0.4b seg with both (docs/targets/openvino.md): mean-quantile 5.4 GiB (15.8 with NNCF's own
quantiles), mean-minmax 4.9 GiB (8.0).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

# NNCF's RangeEstimatorParametersSet.MEAN_QUANTILE (StatisticsCollectorParameters.quantile_outlier_prob).
OUTLIER_PROB = 1e-4


def order_statistics(count: int, q: float) -> tuple[int, float]:
    """(k, frac): the q-quantile of `count` values is d[k-2] (1 - frac) + d[k-1] frac over their k most
    extreme values d, most extreme first (the largest for q >= 0.5, else the smallest): numpy's linear
    interpolation. k is 1 (frac 0) for a single value."""
    t = min(q, 1.0 - q) * (count - 1)
    i = math.floor(t)
    if i + 1 >= count:
        return count, 0.0
    return i + 2, t - i


def quantile_from_top(top: np.ndarray, frac: float) -> float:
    """The quantile from `order_statistics`' k extreme values, most extreme first (numpy's version of
    what the graph computes)."""
    top = np.asarray(top, np.float64).reshape(-1)
    if top.size == 1:
        return float(top[0])
    return float(top[-2] * (1.0 - frac) + top[-1] * frac)


# Chunks a large activation's TopK is split into: the largest of these that divides its size and leaves each
# chunk at least k values (exactness) and 4096 (below that one TopK is cheap).
CHUNKS = (64, 32, 16, 8, 4, 2)


def _chunks(count: int, k: int) -> int:
    return next((c for c in CHUNKS if count % c == 0 and count // c >= max(k, 4096)), 1)


def quantile_op(value: Any, q: float, name: str) -> Any:
    """OpenVINO ops computing the q-quantile of all elements of `value` (a static-shape output), shaped
    [1] * rank as NNCF's keep-dims reductions are; the last op is called `name`."""
    import openvino as ov
    import openvino.opset13 as ops

    shape = list(value.get_shape())
    count = math.prod(shape)
    k, frac = order_statistics(count, q)
    mode = "max" if q >= 0.5 else "min"
    chunks = _chunks(count, k)
    if chunks > 1:
        # The k most extreme of all lie among the k most extreme of each chunk (k <= chunk size): a TopK per
        # chunk inside a TensorIterator, whose body (and TopK scratch) is one chunk, then one over the
        # chunks' k each. OpenVINO's CPU TopK keeps a scratch buffer the size of its input per node.
        rows = ops.reshape(value, np.array([chunks, count // chunks], np.int64), special_zero=False)
        loop = ops.tensor_iterator()
        part = ops.parameter([1, count // chunks], value.get_element_type())
        body_top = ops.result(ops.topk(part, np.array(k, np.int64), axis=1, mode=mode, sort="none").output(0))
        loop.set_body(ov.Model([body_top], [part]))
        loop.set_sliced_input(part, rows.output(0), 0, 1, 1, -1, 0)
        candidates = loop.get_concatenated_slices(body_top.output(0), 0, 1, 1, -1, 0)  # [chunks, k]
        flat = ops.reshape(candidates, np.array([-1], np.int64), special_zero=False)
    else:
        flat = ops.reshape(value, np.array([-1], np.int64), special_zero=False)
    top = ops.topk(flat, np.array(k, np.int64), axis=0, mode=mode, sort="value").output(0)
    last = ops.gather(top, np.array([k - 1], np.int64), np.array(0, np.int64))
    if k > 1:
        before = ops.gather(top, np.array([k - 2], np.int64), np.array(0, np.int64))
        last = ops.add(ops.multiply(before, np.array([1.0 - frac], np.float32)),
                       ops.multiply(last, np.array([frac], np.float32)))
    return ops.reshape(last, np.array([1] * len(shape), np.int64), special_zero=False, name=name)


def _reducer_class() -> type:
    from nncf.common.tensor_statistics.collectors import AxesMode, determine_reduction_axes
    from nncf.openvino.statistics.collectors import OVQuantileReducer

    class InGraphQuantileReducer(OVQuantileReducer):
        """NNCF's quantile reducer, computed by OpenVINO (in place) instead of numpy."""

        def __init__(self, axes: Any = None, axes_mode: Any = AxesMode.REDUCTION, quantile: Any = None,
                     inplace: bool = False):
            super().__init__(axes, axes_mode, quantile, inplace)
            self._inplace = True

        def get_inplace_fn(self) -> Any:
            (q,) = self._quantile  # min_max asks one quantile per reducer

            def insert(node: Any, port: int, name: str) -> Any:
                value = node.output(port)
                shape = list(value.get_shape())
                axes = determine_reduction_axes(len(shape), self._axes, self._axes_mode)
                kept = [d for a, d in enumerate(shape) if a not in tuple(axes)]
                if any(d != 1 for d in kept):  # per-channel or batched statistics: not what min_max asks here
                    raise RuntimeError(f"in-graph quantile over axes {axes} of a {shape} tensor is not implemented")
                return quantile_op(value, float(q), name)

            return insert

    return InGraphQuantileReducer


def _nncf_version() -> str:
    import nncf

    return nncf.__version__


@contextlib.contextmanager
def in_graph_quantiles() -> Iterator[None]:
    """Within this block, NNCF's OpenVINO statistics compute quantiles in the graph (see the module)."""
    from nncf.openvino.statistics import collectors

    keys = [k for k, v in collectors.OV_REDUCERS_MAP.items() if v is collectors.OVQuantileReducer]
    if len(keys) != 1:
        raise RuntimeError(f"NNCF {_nncf_version()}: no single quantile reducer to replace in its OpenVINO registry")
    (key,) = keys
    collectors.OV_REDUCERS_MAP[key] = _reducer_class()
    try:
        yield
    finally:
        collectors.OV_REDUCERS_MAP[key] = collectors.OVQuantileReducer


def producers_first(model: Any, own_outputs: set[str]) -> Any:
    """`model` with its Results reordered: the others (NNCF's statistics) first, the deepest first, then the
    ones whose tensor names are in `own_outputs` (the quantized model's outputs). The same nodes, not a copy.
    A model with sinks (state) is returned as it is."""
    import openvino as ov

    if model.get_sinks():
        return model
    results = list(model.get_results())

    def own(result: Any) -> bool:
        return bool(set(result.output(0).get_names()) & own_outputs
                    or set(result.input_value(0).get_names()) & own_outputs)

    mine = [r for r in results if own(r)]
    # Deepest first by where the model lists each statistic's last op: the order that measured best (the
    # plugin's execution order is its own; tests/quantize/test_openvino_ranges.py checks the result).
    position = {op.get_friendly_name(): i for i, op in enumerate(model.get_ordered_ops())}
    stats = sorted((r for r in results if not own(r)),
                   key=lambda r: -position[r.input_value(0).get_node().get_friendly_name()])
    ordered = stats + mine
    if [id(r) for r in ordered] == [id(r) for r in results]:
        return model
    return ov.Model(ordered, model.get_parameters(), model.get_friendly_name())


@contextlib.contextmanager
def statistics_beside_producers(model: Any) -> Iterator[None]:
    """Within this block, the models NNCF compiles for its statistics (`OVNativeEngine`) run each reduction
    right after the activation it reads (see the module); `model` is the one being quantized."""
    from nncf.openvino.engine import OVNativeEngine

    own = {name for port in model.outputs for name in port.get_names()}
    original = OVNativeEngine.__init__

    def init(self: Any, ov_model: Any, *args: Any, **kwargs: Any) -> None:
        original(self, producers_first(ov_model, own), *args, **kwargs)

    OVNativeEngine.__init__ = init
    try:
        yield
    finally:
        OVNativeEngine.__init__ = original
