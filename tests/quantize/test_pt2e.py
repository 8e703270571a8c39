"""PT2E quantizer set-up for ExecuTorch: which layers get observers, and which observer."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")

from torch import nn  # noqa: E402

from sapiens_edge.errors import SapiensEdgeError  # noqa: E402
from sapiens_edge.quantize import pt2e  # noqa: E402


class TwoLayers(nn.Module):
    """A conv (as in the heads) feeding linears (as in the blocks)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.relu(self.body(self.stem(x).mean((2, 3)))))


def _observers(method: str, keep_float: tuple[str, ...] = (), dynamic: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Observer class names feeding each conv and linear of the prepared model."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    program = torch.export.export(TwoLayers().eval(), (torch.randn(2, 3, 4, 4),))
    prepared = prepare_pt2e(program.module(), pt2e.xnnpack_quantizer(keep_float, method, dynamic=dynamic))
    found: dict[str, list[str]] = {}
    for node in prepared.graph.nodes:
        if node.op == "call_function" and ("linear" in str(node.target) or "conv" in str(node.target)):
            stack = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
            observers = [type(getattr(prepared, a.target)).__name__ for a in node.args
                         if getattr(a, "op", None) == "call_module"]
            found[stack[-1]] = observers
    return found


def test_histogram_is_the_default_activation_observer():
    obs = _observers("histogram")
    assert set(obs) == {"stem", "body", "head"}
    # input activation: histogram; weight: per-channel min/max (symmetric)
    assert all("HistogramObserver" in o and "PerChannelMinMaxObserver" in o for o in obs.values()), obs


def test_minmax_replaces_the_activation_observer_only():
    obs = _observers("minmax")
    assert all("MinMaxObserver" in o and "HistogramObserver" not in o and "PerChannelMinMaxObserver" in o
               for o in obs.values()), obs


def test_keep_float_leaves_matching_layers_unobserved():
    obs = _observers("histogram", keep_float=("head",))
    # The head's weight stays float; its input is still observed as the body's (int8) output.
    assert "PerChannelMinMaxObserver" not in obs["head"] and "PerChannelMinMaxObserver" in obs["body"], obs


def test_dynamic_layers_get_runtime_activation_quantization():
    """`dynamic` linears: per-channel int8 weights, activations by a PlaceholderObserver (quantized per
    inference, no calibrated range) and no observer on their outputs; the rest stays static."""
    obs = _observers("histogram", dynamic=("body",))
    assert "PlaceholderObserver" in obs["body"] and "PerChannelMinMaxObserver" in obs["body"], obs
    assert "HistogramObserver" not in obs["body"], obs
    assert "HistogramObserver" in obs["stem"] and "PlaceholderObserver" not in obs["stem"], obs
    # the head reads the body's fp32 output through relu: calibrated static as before
    assert "HistogramObserver" in obs["head"], obs


def test_keep_float_wins_over_dynamic():
    obs = _observers("histogram", keep_float=("body",), dynamic=("body",))
    assert "PerChannelMinMaxObserver" not in obs["body"] and "PlaceholderObserver" not in obs["body"], obs


def test_unknown_method_is_refused():
    with pytest.raises(SapiensEdgeError, match="histogram, minmax"):
        pt2e.quantize_static(torch.export.export(TwoLayers().eval(), (torch.randn(2, 3, 4, 4),)),
                             lambda: iter(()), 0, method="entropy")


def test_quantized_layers_counts_what_gets_int8_weights():
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    program = torch.export.export(TwoLayers().eval(), (torch.randn(2, 3, 4, 4),))
    prepared = prepare_pt2e(program.module(), pt2e.xnnpack_quantizer(("head",)))
    assert pt2e.quantized_layers(prepared) == {"linear": (1, 2), "conv2d": (1, 1)}


def test_keep_float_pattern_that_matches_no_layer_is_an_error():
    """A user's pattern must leave some linear/conv in float; one that names none (a typo, or a
    module the export rewrites renamed) would otherwise export a fully quantized model."""
    import numpy as np

    from sapiens_edge.errors import RecipeError

    program = torch.export.export(TwoLayers().eval(), (torch.randn(1, 3, 4, 4),))
    batches = lambda: iter([np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)])  # noqa: E731
    with pytest.raises(RecipeError, match="'bdy' matches no linear/conv"):
        pt2e.quantize_static(program, batches, 1, keep_float=("head", "bdy"), user_keep_float=("bdy",))
    _, info = pt2e.quantize_static(program, batches, 1, keep_float=("head", "body"), user_keep_float=("body",))
    assert info["kept_float"] == ["head", "body"]
    # The same check with dynamic layers (executorch-xnnpack-int8-dynamic: two composed quantizers)
    import functools

    dynamic = functools.partial(pt2e.xnnpack_quantizer, dynamic=("body",))
    with pytest.raises(RecipeError, match="'bdy' matches no linear/conv"):
        pt2e.quantize_static(program, batches, 1, keep_float=("bdy",), user_keep_float=("bdy",), quantizer=dynamic)
    _, info = pt2e.quantize_static(program, batches, 1, keep_float=("body",), user_keep_float=("body",),
                                   quantizer=dynamic)
    assert info["kept_float"] == ["body"]


def test_pose_policy_keeps_the_heads_1x1_convs_and_classifier_float():
    """quantize.policy for pose: the head's 1x1 conv layers and the classifier keep float weights (they
    decide near-tied heatmap peaks), the transformer's linears are int8."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from sapiens_edge.quantize.policy import keep_float_keys
    from tests.export.shared import tiny_model

    model = tiny_model("pose")
    h, w = model.sapiens_info.input_hw
    program = torch.export.export(model, (torch.randn(1, 3, h, w),))
    prepared = prepare_pt2e(program.module(), pt2e.xnnpack_quantizer(keep_float_keys("pose")))
    weight_observed: dict[str, bool] = {}
    for node in prepared.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.linear.default, torch.ops.aten.conv2d.default):
            path = [p for p, _ in node.meta.get("nn_module_stack", {}).values()][-1]
            weight = node.args[1]
            weight_observed[path] = getattr(weight, "op", None) == "call_module" and "PerChannel" in type(
                getattr(prepared, weight.target)).__name__
    convs = {p: o for p, o in weight_observed.items() if "decode_head.conv_layers" in p}
    assert convs and not any(convs.values()), convs
    assert not any(o for p, o in weight_observed.items() if "conv_pose" in p or "patch_embed" in p)
    assert any(o for p, o in weight_observed.items() if ".blocks." in p and ".attn." in p), weight_observed
