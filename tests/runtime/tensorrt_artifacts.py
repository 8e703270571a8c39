"""A tiny ONNX artifact for the tensorrt backend's tests (a 1x1 convolution, optionally an RMSNormalization),
its numpy reference, and one run through the backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sapiens_edge import runtime
from sapiens_edge.export.artifact import write_artifact
from sapiens_edge.manifest import Manifest, TensorSpec

H, W, C = 8, 6, 4
RNG = np.random.default_rng(0)
WEIGHTS = [(RNG.normal(size=(C, 3, 1, 1)).astype(np.float32), RNG.normal(size=C).astype(np.float32))
           for _ in range(2)]
X = RNG.normal(size=(1, 3, H, W)).astype(np.float32)


def conv_model(path: Path, weight: np.ndarray, bias: np.ndarray, rms: bool = False) -> None:
    """image (1, 3, H, W) -> logits (1, C, H, W): a 1x1 convolution, its weights in model.onnx.data (as the
    exports store them); `rms` adds an opset-23 RMSNormalization over W (TensorRT parses it from 10.15)."""
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["conv" if rms else "logits"], name="head/conv")]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    if rms:
        nodes.append(helper.make_node("RMSNormalization", ["conv", "scale"], ["logits"], name="head/rms", axis=-1))
        inits.append(numpy_helper.from_array(np.linspace(0.5, 1.5, W, dtype=np.float32), "scale"))
    graph = helper.make_graph(nodes, "seg", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, C, H, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23 if rms else 17)])
    model.ir_version = 10 if rms else 8
    onnx.save_model(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)


def reference(weights: int = 0, rms: bool = False) -> np.ndarray:
    weight, bias = WEIGHTS[weights]
    out = np.einsum("oc,nchw->nohw", weight[:, :, 0, 0], X) + bias.reshape(1, C, 1, 1)
    if rms:
        out = out / np.sqrt(np.mean(out**2, axis=-1, keepdims=True) + 1e-5) * np.linspace(0.5, 1.5, W)
    return out


def make_artifact(folder: Path, weights: int = 0, rms: bool = False) -> Path:
    def build(work: Path) -> Manifest:
        conv_model(work / "model.onnx", *WEIGHTS[weights], rms=rms)
        return Manifest(model="sapiens2-0.1b-seg", task="seg", recipe="onnx-fp32", target="onnx", precision="fp32",
                        input_hw=[H, W], files={}, model_file="model.onnx",
                        inputs=[TensorSpec("image", [1, 3, H, W], "float32")],
                        outputs=[TensorSpec("logits", [1, C, H, W], "float32")],
                        normalization={}, source_weights={"random": True}, tool_versions={})

    write_artifact(folder, build)
    return folder


def run_once(folder: Path, **options) -> tuple[np.ndarray, dict]:
    with runtime.load(folder, backend="tensorrt", **options) as p:
        return p.run(X)[0], p.describe()
