"""Post-training quantization with calibration (`sapiens_edge.quantize`), used by the export recipes.

* `policy.py`: which layers static int8 leaves in float (patch embedding, classifiers, the seg head,
  the pose head's 1x1 convs, the down-projection rotations), shared by every target's quantizer.
* `gptq.py`: GPTQ weight rounding onto the int8 grid every target uses, and onto palettization LUTs.
* `onnx_ptq.py`: ONNX int8 with ONNX Runtime's quantizer: streaming calibration (one image at a time),
  static QDQ and dynamic.
* `pt2e.py`: PT2E int8 (torchao prepare/convert) with ExecuTorch's XNNPACK quantizer or litert-torch's,
  for the ExecuTorch, TFLite and Core ML W8A8 recipes.
* `coreml_twin.py`: torch twins of the Core ML recipes, to measure their numerical effect off Apple hardware.

Design notes with the figures behind these choices: docs/design/ (keep-float-policy.md, gptq-rounding.md).
"""
