"""Post-training quantization with calibration (`sapiens_edge.quantize`). Not implemented yet."""
