"""Task heads (spec section 4). Sequential indices count every layer (conv, norm, act), so
learnable layers sit at 0, 3, 6, ... exactly as in the released state_dict keys."""

from __future__ import annotations

import torch
from torch import nn

from ..zoo import HeadConfig


def _deconv_units(cin: int, outs: tuple[int, ...]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for cout in outs:
        layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                   nn.InstanceNorm2d(cout), nn.SiLU()]
        cin = cout
    return layers


def _conv_units(cin: int, outs: tuple[int, ...], k: int, stride: int = 1, padding: int | None = None):
    layers: list[nn.Module] = []
    pad = (k - 1) // 2 if padding is None else padding
    for cout in outs:
        layers += [nn.Conv2d(cin, cout, k, stride=stride, padding=pad), nn.InstanceNorm2d(cout), nn.SiLU()]
        cin = cout
    return layers


def _upsample_unit(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2),
                         nn.InstanceNorm2d(cout), nn.SiLU())


class PoseHeatmapHead(nn.Module):
    def __init__(self, in_channels: int, cfg: HeadConfig):
        super().__init__()
        self.deconv_layers = nn.Sequential(*_deconv_units(in_channels, cfg.deconv))
        self.conv_layers = nn.Sequential(*_conv_units(cfg.deconv[-1], cfg.conv, 1))
        self.conv_pose = nn.Conv2d(cfg.conv[-1], cfg.out_channels, 1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.conv_pose(self.conv_layers(self.deconv_layers(feat)))


class SegHead(nn.Module):
    def __init__(self, in_channels: int, cfg: HeadConfig):
        super().__init__()
        self.deconv_layers = nn.Sequential(*_deconv_units(in_channels, cfg.deconv))
        self.conv_layers = nn.Sequential(*_conv_units(cfg.deconv[-1], cfg.conv, 1))
        self.conv_seg = nn.Conv2d(cfg.conv[-1], cfg.out_channels, 1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.conv_layers(self.deconv_layers(feat)))


class _DenseBranch(nn.Module):
    """input_conv -> 4 PixelShuffle upsample units -> 3x3 conv units (normal and pointmap)."""

    def __init__(self, in_channels: int, cfg: HeadConfig):
        super().__init__()
        self.input_conv = nn.Sequential(*_conv_units(in_channels, (in_channels,), 3))
        ups, cin = [], in_channels
        for cout in cfg.upsample:
            ups.append(_upsample_unit(cin, cout))
            cin = cout
        self.upsample_blocks = nn.ModuleList(ups)
        self.conv_layers = nn.Sequential(*_conv_units(cfg.upsample[-1], cfg.conv, 3))

    def dense(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.input_conv(feat)
        for up in self.upsample_blocks:
            x = up(x)
        return self.conv_layers(x)


class NormalHead(_DenseBranch):
    def __init__(self, in_channels: int, cfg: HeadConfig):
        super().__init__(in_channels, cfg)
        self.conv_normal = nn.Conv2d(cfg.conv[-1], cfg.out_channels, 1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.conv_normal(self.dense(feat))


class PointmapHead(_DenseBranch):
    def __init__(self, in_channels: int, cfg: HeadConfig):
        super().__init__(in_channels, cfg)
        self.conv_pointmap = nn.Conv2d(cfg.conv[-1], cfg.out_channels, 1)
        self.scale_conv_layers = nn.Sequential(*_conv_units(in_channels, cfg.scale_conv, 1, stride=2, padding=0))
        mlp: list[nn.Module] = [nn.Flatten()]
        widths = cfg.scale_mlp
        for i in range(len(widths) - 1):
            mlp.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                mlp.append(nn.SiLU())
        self.scale_final_layer = nn.Sequential(*mlp)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pointmap = self.conv_pointmap(self.dense(feat))
        scale = self.scale_final_layer(self.scale_conv_layers(feat))  # reads the featmap directly
        return pointmap, scale


HEADS = {"pose": PoseHeatmapHead, "seg": SegHead, "normal": NormalHead, "pointmap": PointmapHead}
