"""A tiny TFLite model written with LiteRT's own flatbuffer schema (no torch, no converter), so the
runtime's TFLite backend can be tested where torch is blocked or absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_add_model(path: Path, h: int, w: int, bias: np.ndarray) -> None:
    """image (1, h, w, 3) float32 -> logits = image + bias (bias: 3 floats), signature serving_default."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    f32 = fb.TensorType.FLOAT32
    tensors = [fb.TensorT(shape=[1, h, w, 3], type=f32, buffer=0, name="image"),
               fb.TensorT(shape=[1, 1, 1, 3], type=f32, buffer=1, name="bias"),
               fb.TensorT(shape=[1, h, w, 3], type=f32, buffer=0, name="logits")]
    add = fb.OperatorT(opcodeIndex=0, inputs=[0, 1], outputs=[2],
                       builtinOptionsType=fb.BuiltinOptions.AddOptions, builtinOptions=fb.AddOptionsT())
    model = fb.ModelT(
        version=3,
        operatorCodes=[fb.OperatorCodeT(deprecatedBuiltinCode=fb.BuiltinOperator.ADD, version=1,
                                        builtinCode=fb.BuiltinOperator.ADD)],
        subgraphs=[fb.SubGraphT(tensors=tensors, inputs=[0], outputs=[2], operators=[add], name="main")],
        buffers=[fb.BufferT(), fb.BufferT(data=np.asarray(bias, np.float32).reshape(3).view(np.uint8))],
        signatureDefs=[fb.SignatureDefT(inputs=[fb.TensorMapT(name="image", tensorIndex=0)],
                                        outputs=[fb.TensorMapT(name="logits", tensorIndex=2)],
                                        signatureKey="serving_default", subgraphIndex=0)])
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(path).write_bytes(bytes(builder.Output()))
