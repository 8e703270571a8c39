"""Which layers static int8 leaves in float, shared by every target's quantizer.

First and last layers stay fp32, as usual in PTQ: the patch embedding sees raw pixels and the
classifier's rounding lands directly on the logits/heatmaps; both are a tiny share of the compute.
For seg, also the head's two 1x1 convs at full resolution (64 channels, 0.01 % of the weights,
~1 % of the FLOPs) right before the classifier. Users add more with `--keep-float PATTERN`.
"""

from __future__ import annotations

KEEP_FLOAT = ("patch_embed", "conv_seg", "conv_pose")
KEEP_FLOAT_BY_TASK = {"seg": ("decode_head.conv_layers",)}
# Export-rewrite helpers that are linears in form but statistics in meaning (RMSNorm's mean of
# squares): quantizing them would quantize the norm itself.
NEVER_QUANTIZE = ("mean_sq",)


def keep_float_keys(task: str | None, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Substrings of parameter / module names whose layers stay in float."""
    return KEEP_FLOAT + KEEP_FLOAT_BY_TASK.get(task or "", ()) + NEVER_QUANTIZE + tuple(extra)
