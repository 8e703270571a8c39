"""Which layers static int8 leaves in float, shared by every target's quantizer.

First and last layers stay fp32, as usual in PTQ: the patch embedding sees raw pixels and the
classifier's rounding lands directly on the logits/heatmaps; both are a tiny share of the compute.
For seg, the whole head: its four up-sampling convs carry per-tensor int8 activations at up to
full resolution straight into the per-pixel argmax. Measured on 0.1b seg (stand-in weights, torch
fake-quant, one group of layers int8 at a time): head convs alone cost 3-3.5 points of pixel
agreement, every q/k/v/proj/FFN-input group under 1 point; with the head in float onnx-int8 goes
from 94.9 % to 97.6 % (minmax) / 98.3 % (percentile) and executorch-xnnpack-int8 from 96.2 % to
98.2 %, for 7 % of the weights in fp32 (file 0.31x instead of 0.26x) and ~0.3 s. Storing just the
head's weights in int8 (weight-only, float compute) costs too much as well: on the same stand-in one
such layer alone costs 1-1.4 points (all of them: 97.3 % for ONNX), so they stay fp32. Users add
layers with `--keep-float PATTERN`.

For pose, the head's 1x1 conv layers (0.2 % of the weights, in front of the classifier at heatmap
resolution): with them int8 the heatmaps' SNR was 20.8 dB and on the 0.4b stand-in 8 of 308 keypoints
jumped between two near-tied modes (second mode within 1-5.6 % of the peak), 1.68 heatmap px mean;
kept float, 23.7 dB, 2 jumps, 0.31 px, at the same file size and speed. The whole pose head float
gave 29.7 dB and 0.15 px, but a 0.272x file and ~20 % more latency (its up-sampling deconvs in fp32).
"""

from __future__ import annotations

KEEP_FLOAT = ("patch_embed", "conv_seg", "conv_pose")
KEEP_FLOAT_BY_TASK = {"seg": ("decode_head.",), "pose": ("decode_head.conv_layers.",)}
# Export-rewrite helpers that are linears in form but not layers of the model: RMSNorm's mean of
# squares (quantizing it would quantize the norm itself) and the Hadamard rotation in front of a
# down projection (`export.rewrites.rotate_ffn_input`: it exists so that the int8 input comes after it),
# and the decoded outputs' decoding (`export.decode.Decoder`: DARK's blur is a conv, and its log map needs float).
NEVER_QUANTIZE = ("mean_sq", "rotation", "decoder")


def first_blocks(count: int, depth: int) -> tuple[str, ...]:
    """`--keep-float` patterns for the first `count` of a backbone's `depth` transformer blocks (`--keep-float-blocks`):
    the int8 error of the large seg stand-ins sits mostly there (docs/design/export-memory.md#int8-of-the-large-models).
    The trailing dot keeps `backbone.blocks.1.` from matching block 10."""
    from sapiens_edge.errors import OptionError

    if not 1 <= count <= depth:
        raise OptionError(f"--keep-float-blocks {count}: the model has {depth} transformer blocks; "
                          f"give a count from 1 to {depth}.")
    return tuple(f"backbone.blocks.{i}." for i in range(count))


def keep_float_keys(task: str | None, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Substrings of parameter / module names whose layers stay in float."""
    return KEEP_FLOAT + KEEP_FLOAT_BY_TASK.get(task or "", ()) + NEVER_QUANTIZE + tuple(extra)
