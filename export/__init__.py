"""Export targets (`sapiens_edge.export`): ONNX, ExecuTorch, Core ML and TFLite/LiteRT artifacts.

Not implemented yet. Models are already export-friendly: wrap capture in
`sapiens_edge.models.rope_constants(model, input_hw)` to bake the RoPE tables as constants.
"""
