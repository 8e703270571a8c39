"""quantize/policy.first_blocks and the CLI's --keep-float-blocks, which expands into --keep-float patterns."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sapiens_edge import cli
from sapiens_edge.errors import OptionError
from sapiens_edge.quantize.policy import first_blocks
from sapiens_edge.zoo import get_model_info


def test_first_blocks_names_each_block_once():
    assert first_blocks(3, 24) == ("backbone.blocks.0.", "backbone.blocks.1.", "backbone.blocks.2.")
    names = [f"backbone.blocks.{i}.attn.wq.weight" for i in range(12)]
    # the trailing dot: block 1's pattern does not take blocks 10 and 11
    assert [n for n in names if any(p in n for p in first_blocks(2, 12))] == names[:2]


@pytest.mark.parametrize("count", [0, -1, 25])
def test_a_count_outside_the_model_is_an_option_error(count):
    with pytest.raises(OptionError, match=rf"--keep-float-blocks {count}: the model has 24 transformer blocks; "
                                          r"give a count from 1 to 24"):
        first_blocks(count, 24)


def test_cli_adds_the_blocks_to_keep_float(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_export(model, recipe, output, **kw):
        seen.update(kw, model=model)
        return SimpleNamespace(path=tmp_path, seconds=0.0,
                               manifest=SimpleNamespace(recipe=recipe, model_file="model.onnx", files=[]))

    monkeypatch.setattr("sapiens_edge.export.core.export", fake_export)
    argv = ["export", "sapiens2-0.8b-seg", "--recipe", "onnx-int8", "--random-weights", "--keep-float",
            "decode_head.", "--keep-float-blocks", "2", "-o", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    assert seen["keep_float"] == ("decode_head.", "backbone.blocks.0.", "backbone.blocks.1.")
    depth = get_model_info("sapiens2-0.8b-seg").arch.depth
    capsys.readouterr()
    assert cli.main([*argv[:-4], "--keep-float-blocks", str(depth + 1), "-o", str(tmp_path / "o2")]) != 0
    assert f"the model has {depth} transformer blocks" in capsys.readouterr().err
