"""Decoded outputs (`export.decode`, `--decode`), target-independent: the graph's decoding against the numpy
decoders it reproduces, the requests export refuses before any work, and the runtime's reading of decoded
outputs. The per-target exports through the gate are in the target test files (test_decoded_*)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sapiens_edge import runtime  # noqa: E402
from sapiens_edge.errors import OptionError, RecipeError  # noqa: E402
from sapiens_edge.export import core  # noqa: E402
from sapiens_edge.export.decode import DecodedModel, Decoder, decode_pose  # noqa: E402
from sapiens_edge.export.recipes import get_recipe  # noqa: E402
from sapiens_edge.export.target_table import check_request  # noqa: E402
from sapiens_edge.runtime.decoded import decode_raw, decoded_normals, decoded_pose, decoded_seg_labels  # noqa: E402
from sapiens_edge.runtime.golden import pose_heatmaps  # noqa: E402
from sapiens_edge.runtime.pose import decode_udp_dark  # noqa: E402
from tests.export.shared import tiny_model  # noqa: E402
from tests.helpers import ASTRONAUT  # noqa: E402

KEYPOINT_PX = 1e-3  # the graph's UDP + DARK against the numpy decoder on sharp synthetic peaks (heatmap px)


@pytest.mark.parametrize("hw,seed", [((16, 12), 1), ((64, 48), 2), ((33, 20), 3)])
def test_pose_decoding_in_the_graph_is_the_numpy_decoder(hw, seed):
    """Peaks at known sub-pixel spots, on borders, tiny (blur below DARK's 1e-3 clip), above 50 (the other clip),
    all-zero maps (score 0: (-1, -1)): keypoints within 1e-3 heatmap px, scores identical."""
    heatmaps, _ = pose_heatmaps(3, 308, hw, seed)
    keypoints, scores = decode_pose(torch.from_numpy(heatmaps))
    for i in range(len(heatmaps)):
        coords, ref_scores = decode_udp_dark(heatmaps[i])
        np.testing.assert_array_equal(scores[i].numpy(), ref_scores)
        assert np.abs(keypoints[i].numpy() - coords).max() <= KEYPOINT_PX
    assert (keypoints.numpy()[scores.numpy() <= 0] == -1).all()


def test_pose_decoding_takes_the_blurred_maximum_of_the_whole_map():
    """Noisy heatmaps (a random-weight tiny model): where the blurred maximum lies far from the argmax, it still
    rescales the map before DARK's clipping, as in the numpy decoder (which blurs the whole map for it)."""
    import sapiens_edge.runtime.pose as P

    model = tiny_model("pose")
    with torch.no_grad():
        heatmaps = model(torch.zeros(1, 3, *model.sapiens_info.input_hw)).numpy()[0]
    k, h, w = heatmaps.shape
    blurred = P._blur_boxes(heatmaps, np.arange(k), np.zeros(k, int), np.zeros(k, int), h, w).reshape(k, -1)
    rows_apart = np.abs(blurred.argmax(axis=1) // w - heatmaps.reshape(k, -1).argmax(axis=1) // w)
    assert rows_apart.max() > 5  # the case a window around the peak would miss
    keypoints, scores = DecodedModel(model).decoder(torch.from_numpy(heatmaps[None]))
    coords, ref_scores = decode_udp_dark(heatmaps)
    np.testing.assert_array_equal(scores[0].numpy(), ref_scores)
    assert np.abs(keypoints[0].numpy() - coords).max() <= KEYPOINT_PX


def test_seg_labels_are_the_first_maximum_in_the_declared_dtype():
    logits = torch.randn(1, 5, 6, 7)
    logits[0, 3, 0, 0] = logits[0, 1, 0, 0] = 100.0  # a tie: the lower class id wins, as torch/numpy argmax
    for dtype in ("uint8", "int32"):
        labels = Decoder("seg", dtype)(logits)
        assert str(labels.dtype) == f"torch.{dtype}" and labels.shape == (1, 6, 7)
        np.testing.assert_array_equal(labels.numpy(), decode_raw("seg", [logits.numpy()], dtype)[0])
        assert labels[0, 0, 0] == 1


def test_normals_are_unit_vectors():
    raw = torch.randn(1, 3, 8, 6) * 5
    raw[0, :, 0, 0] = 0  # the norm's clamp: zeros stay zeros
    out = Decoder("normal")(raw).numpy()
    np.testing.assert_allclose(out, decode_raw("normal", [raw.numpy()])[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1)[0].ravel()[1:], 1, atol=1e-6)
    assert (out[0, :, 0, 0] == 0).all()


def test_decoded_model_keeps_the_model_and_names_its_outputs():
    model = tiny_model("pose")
    wrapped = DecodedModel(model)
    x = torch.zeros(1, 3, *model.sapiens_info.input_hw)
    with torch.no_grad():
        keypoints, scores = wrapped(x)
        heatmaps = model(x)
    assert wrapped.sapiens_output_names == ["keypoints", "scores"] and wrapped.backbone is model.backbone
    ref = decode_raw("pose", [heatmaps.numpy()])
    np.testing.assert_array_equal(scores.numpy(), ref[1])
    assert np.abs(keypoints.numpy() - ref[0]).max() <= KEYPOINT_PX


@pytest.mark.parametrize("task,why", [("pointmap", "dense geometry already"), ("backbone", "no task decoding")])
def test_tasks_without_decoding_are_refused_before_any_work(task, why, tmp_path):
    with pytest.raises(OptionError, match=why):
        core.export(f"sapiens2-0.1b-{task}" if task != "backbone" else "sapiens2-0.1b", "onnx-fp32",
                    tmp_path / "a", decode=True, progress=lambda _: None)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("recipe,options,needle", [
    ("coreml-fp32", None, "coreml target"),
    ("tensorrt-fp16", None, "tensorrt delegate"),
    ("onnx-fp32", {"pipeline": "streamed"}, "in-memory ONNX route"),
])
def test_targets_declare_whether_they_decode(recipe, options, needle):
    with pytest.raises(RecipeError, match=needle):
        check_request(get_recipe(recipe), target_options=options, decode=True)
    check_request(get_recipe(recipe), target_options=options)  # without --decode: fine


def test_processors_read_decoded_outputs_as_the_contract_says():
    image = runtime.load_image(ASTRONAUT)
    seg, pose, normal = (runtime.get_processor(t) for t in ("seg", "pose", "normal"))
    prepared = seg.prepare(image, None, (64, 48))
    ids = np.random.default_rng(0).integers(0, 29, (1, 64, 48)).astype(np.uint8)
    res = seg.finish([ids], prepared, decoded=True)
    assert res.labels.dtype == np.uint8
    np.testing.assert_array_equal(res.labels, decoded_seg_labels(ids[0], image.shape[:2]))
    assert len(res.fractions) == 29 and abs(res.fractions.sum() - 1) < 1e-9

    boxes = np.array([[10, 20, 200, 300]], np.float32)
    prepared = pose.prepare(image, boxes, (64, 48))
    kp = np.random.default_rng(1).uniform(0, 11, (1, 308, 2)).astype(np.float32)
    sc = np.random.default_rng(2).uniform(0, 1, (1, 308)).astype(np.float32)
    res = pose.finish([kp, sc], prepared, decoded=True)
    np.testing.assert_array_equal(res.keypoints, decoded_pose(kp, prepared.context, (16, 12)))
    np.testing.assert_array_equal(res.scores, sc)
    assert not res.flip_test

    prepared = normal.prepare(image, None, (64, 48))
    raw = np.random.default_rng(3).normal(size=(1, 3, 64, 48)).astype(np.float32)
    unit = decode_raw("normal", [raw])[0]
    res = normal.finish([unit], prepared, decoded=True)
    np.testing.assert_array_equal(res.normals, decoded_normals(unit[0], prepared.context.pad, image.shape[:2]))
    # The raw path normalizes too, then resizes alike: same numbers from raw or decoded outputs.
    np.testing.assert_allclose(normal.finish([raw], prepared).normals, res.normals, atol=1e-6)


def test_flip_test_needs_raw_heatmaps():
    image = runtime.load_image(ASTRONAUT)
    calls = []

    def model_fn(x):
        calls.append(x.shape)
        n = x.shape[0]
        return [np.zeros((n, 308, 2), np.float32), np.ones((n, 308), np.float32)]

    with pytest.raises(OptionError, match="export without --decode"):
        runtime.run_task(model_fn, image, "pose", flip_test=True, input_hw=(64, 48), decoded=True)
    assert calls == []  # refused before running anything
    res = runtime.run_task(model_fn, image, "pose", input_hw=(64, 48), decoded=True)  # default: no flip test
    assert len(calls) == 1 and not res.flip_test
