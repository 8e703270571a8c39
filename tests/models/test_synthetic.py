"""Stand-in weights: attention switched on, classifiers made confident."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sapiens_edge.models import Sapiens2TaskModel  # noqa: E402
from sapiens_edge.models.synthetic import make_confident_, wake_layer_scale_  # noqa: E402
from tests.export.shared import photo_input  # noqa: E402
from tests.helpers import tiny_info  # noqa: E402


def _fresh_seg_model():
    torch.manual_seed(0)
    info = tiny_info("seg")
    model = Sapiens2TaskModel(info).eval()
    model.sapiens_info = info
    return model


def _attention_share(model, x) -> float:
    """How much the outputs move when every attention branch is removed (relative L2)."""
    with torch.no_grad():
        full = model(x)
        saved = {n: p.clone() for n, p in model.named_parameters() if n.endswith("gamma.weight")}
        for n, p in model.named_parameters():
            if n in saved:
                p.zero_()
        without = model(x)
        for n, p in model.named_parameters():
            if n in saved:
                p.copy_(saved[n])
    return float((full - without).norm() / full.norm())


def test_fresh_init_switches_attention_off_and_wake_layer_scale_turns_it_on():
    model = _fresh_seg_model()
    x = torch.from_numpy(photo_input("seg", model.sapiens_info.input_hw))
    gammas = [p for n, p in model.named_parameters() if n.endswith("gamma.weight")]
    assert gammas and all(torch.all(g == g.flatten()[0]) and float(g.flatten()[0]) < 1e-3 for g in gammas)
    asleep = _attention_share(model, x)
    assert wake_layer_scale_(model) == len(gammas) == len(model.backbone.blocks)
    assert all(torch.all(g == 1) for g in gammas)
    awake = _attention_share(model, x)
    assert asleep < 1e-3 < 0.05 < awake, (asleep, awake)


def test_confident_seg_classifier_uses_a_few_classes_in_regions():
    model = _fresh_seg_model()
    wake_layer_scale_(model)
    x = torch.from_numpy(photo_input("seg", model.sapiens_info.input_hw))

    def labels_and_coherence() -> tuple[torch.Tensor, float]:
        """(labels, share of pixels labelled like their right-hand neighbour)"""
        with torch.no_grad():
            labels = model(x).argmax(1)
        return labels, float((labels[..., 1:] == labels[..., :-1]).float().mean())

    _, random_coherence = labels_and_coherence()
    make_confident_(model, x, active_classes=6)
    labels, coherence = labels_and_coherence()
    assert set(labels.unique().tolist()) <= set(range(6)) and labels.unique().numel() >= 4
    assert coherence > random_coherence, (random_coherence, coherence)


def test_pose_readouts_are_smooth_peaks_that_dark_decodes_stably():
    """Each stand-in heatmap is a fitted Gaussian blob: peak 1 on its target, median 0, and DARK's
    sub-pixel step barely moves under a 1e-3 perturbation of the features (a spiky map's would
    jump by pixels)."""
    import numpy as np

    from sapiens_edge.models.synthetic import _blob_readouts, _blur
    from sapiens_edge.runtime.pose import decode_udp_dark

    gen = torch.Generator().manual_seed(0)
    c, h, w = 48, 48, 64
    noise = torch.randn(c, h, w, generator=gen, dtype=torch.float64)
    # Rough features with a weaker smooth part, like a random head's deconvolution output.
    feats = _blur(noise, sigma=1.5) + 0.75 * torch.randn(c, h, w, generator=gen, dtype=torch.float64)
    feats = feats - feats.mean((1, 2), keepdim=True)
    weight, bias = _blob_readouts(feats, 24, candidates=512)
    maps = torch.einsum("kc,chw->khw", weight, feats) + bias[:, None, None]
    flat = maps.flatten(1)
    assert torch.allclose(flat.max(1).values, torch.ones(24, dtype=torch.float64))
    assert torch.allclose(flat.median(1).values, torch.zeros(24, dtype=torch.float64), atol=1e-9)
    assert len(set(flat.argmax(1).tolist())) >= 20  # distinct locations
    shaken = feats + 1e-3 * feats.std() * torch.randn(c, h, w, generator=gen, dtype=torch.float64)
    moved = torch.einsum("kc,chw->khw", weight, shaken) + bias[:, None, None]
    ref, _ = decode_udp_dark(maps.float().numpy())
    cand, _ = decode_udp_dark(moved.float().numpy())
    shift = np.linalg.norm(ref - cand, axis=1)
    assert shift.max() < 0.05, shift.max()  # random readout directions: 0.6 px on these features


def test_distinct_peaks_shares_the_best_fits_among_the_keypoints():
    from tests.export.shared import tiny_model

    model = tiny_model("pose", distinct_peaks=8)
    w = model.decode_head.conv_pose.weight.detach().flatten(1)  # (308 keypoints, C)
    assert torch.unique(w, dim=0).shape[0] == 8
    default = tiny_model("pose").decode_head.conv_pose.weight.detach().flatten(1)
    assert torch.unique(default, dim=0).shape[0] > 8
