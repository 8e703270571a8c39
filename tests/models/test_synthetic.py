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
