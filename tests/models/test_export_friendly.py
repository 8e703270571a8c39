"""Spec section 8: every task model captures with torch.export (static shapes, no graph breaks),
with RoPE as constants, and the captured program reproduces eager outputs exactly."""

from __future__ import annotations

import pytest
import torch

from sapiens_edge.models import Sapiens2Backbone, Sapiens2TaskModel, rope_constants
from tests.helpers import TINY_4K, randomize_, tiny_info


@pytest.mark.parametrize("task", ["pose", "seg", "normal", "pointmap"])
def test_task_models_export(task):
    info = tiny_info(task)
    model = randomize_(Sapiens2TaskModel(info).eval(), seed=2)
    x = torch.randn(1, 3, *info.input_hw)
    with rope_constants(model, info.input_hw):
        ep = torch.export.export(model, (x,))
    with torch.no_grad():
        eager, exported = model(x), ep.module()(x)
    eager = eager if isinstance(eager, tuple) else (eager,)
    exported = exported if isinstance(exported, tuple) else (exported,)
    for a, b in zip(eager, exported, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_4k_tokenizer_is_one_batched_pass():
    model = randomize_(Sapiens2Backbone(TINY_4K).eval())
    x = torch.randn(2, 3, 256, 192)
    with rope_constants(model, (256, 192)):
        ep = torch.export.export(model, (x,))
    # one attention call per tokenizer block and per trunk block: no per-chunk loop was unrolled
    sdpa = [n for n in ep.graph.nodes if "scaled_dot_product_attention" in str(n.target)]
    assert len(sdpa) == TINY_4K.tokenizer_layers + TINY_4K.depth
