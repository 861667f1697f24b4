"""Classifiers that expose their last feature maps and their head separately.

For every model `head(pool(features(x))) == forward(x)`; AttentionMix reads `features(x)`.
Each takes any channel count and image size, and a width multiplier (0.25 gives a ResNet-18
with 16 base channels for CPU runs).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError


class FeatureClassifier(nn.Module):
    """features → global average pool → linear head."""

    def pool(self, feature_maps: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(feature_maps, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def _ch(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + skip


class ResNet(FeatureClassifier):
    """ResNet-18 / PreAct-ResNet18 with the CIFAR stem (3×3 conv, stride 1, no max-pool)."""

    def __init__(self, block, num_classes: int, in_channels: int = 3, width: float = 1.0, blocks=(2, 2, 2, 2)):
        super().__init__()
        self.preact = block is PreActBlock
        widths = [_ch(b, width) for b in (64, 128, 256, 512)]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.stem_bn = nn.Identity() if self.preact else nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for i, (cout, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.final_bn = nn.BatchNorm2d(cin) if self.preact else nn.Identity()
        self.head = nn.Linear(cin, num_classes)
        self.feature_channels = cin

    def features(self, x):
        out = self.stem(x)
        out = out if self.preact else F.relu(self.stem_bn(out))
        out = self.layers(out)
        return F.relu(self.final_bn(out)) if self.preact else out


class WideResNet(FeatureClassifier):
    """WRN-depth-k (pre-activation), e.g. WRN-16-4."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, depth: int = 16, k: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        n = (depth - 4) // 6
        widths = [_ch(16, width)] + [_ch(16 * 2**i * k, width) for i in range(3)]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            for j in range(n):
                layers.append(PreActBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, dropout))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.final_bn = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)
        self.feature_channels = cin

    def features(self, x):
        return F.relu(self.final_bn(self.layers(self.stem(x))))


class ConvNet(FeatureClassifier):
    """A small, fast 3-stage ConvNet for tests and quick CPU experiments."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        c = [_ch(b, width) for b in (32, 64, 128)]

        def stage(cin, cout, pool):
            mods = [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return mods + ([nn.MaxPool2d(2)] if pool else [])

        self.body = nn.Sequential(*stage(in_channels, c[0], True), *stage(c[0], c[1], True), *stage(c[1], c[2], False))
        self.head = nn.Linear(c[2], num_classes)
        self.feature_channels = c[2]

    def features(self, x):
        return self.body(x)


MODELS = {
    "resnet18": lambda nc, ch, w: ResNet(BasicBlock, nc, ch, w),
    "preact_resnet18": lambda nc, ch, w: ResNet(PreActBlock, nc, ch, w),
    "wrn16_1": lambda nc, ch, w: WideResNet(nc, ch, w, depth=16, k=1),
    "wrn16_2": lambda nc, ch, w: WideResNet(nc, ch, w, depth=16, k=2),
    "wrn16_4": lambda nc, ch, w: WideResNet(nc, ch, w, depth=16, k=4),
    "wrn16_8": lambda nc, ch, w: WideResNet(nc, ch, w, depth=16, k=8),
    "convnet": lambda nc, ch, w: ConvNet(nc, ch, w),
}


def check_model_name(name: str) -> str:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}.")
    return name


def build_model(name: str, num_classes: int, in_channels: int = 3, width: float = 1.0) -> FeatureClassifier:
    """Build a model by name. `width` multiplies every layer's channel count."""
    check_model_name(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer ≥ 2, got {num_classes!r}.")
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 or 3, got {in_channels!r}.")
    if not (isinstance(width, (int, float)) and 0 < width <= 8):
        raise ConfigError(f"width (a channel multiplier) must be in (0, 8], got {width!r}.")
    return MODELS[name](num_classes, in_channels, float(width))
