"""Inception-ResNet-v1, after Szegedy et al. 2016 ("Inception-v4, Inception-ResNet and the
Impact of Residual Connections on Learning"), which timm does not ship.

Figure numbers refer to the paper: stem (Fig. 14) 299x299x3 -> 35x35x256; 5 x Inception-ResNet-A
(Fig. 10); Reduction-A (Fig. 7, k=192 l=192 m=256 n=384) -> 17x17x896; 10 x Inception-ResNet-B
(Fig. 11); Reduction-B (Fig. 12) -> 8x8x1792; 5 x Inception-ResNet-C (Fig. 13); average pool,
dropout (keep 0.8), linear. Each residual branch ends in a linear 1x1 convolution whose output is
scaled (Section 3.3, 0.1-0.3) before the addition. Registered with timm as ``inception_resnet_v1``.
"""
from typing import Any, Dict, List

import torch
from torch import nn
from timm.models._builder import build_model_with_cfg
from timm.models._registry import generate_default_cfgs, register_model

from inception_deploy.pipeline.models.layers import ClassifierBase, ConvBnRelu


class Stem(nn.Module):
    """Fig. 14: the Inception-ResNet-v1 stem."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.conv1a = ConvBnRelu(in_chans, 32, 3, stride=2)   # 149x149x32
        self.conv2a = ConvBnRelu(32, 32, 3)                   # 147x147x32
        self.conv2b = ConvBnRelu(32, 64, 3, padding=1)        # 147x147x64
        self.maxpool3a = nn.MaxPool2d(3, stride=2)            # 73x73x64
        self.conv3b = ConvBnRelu(64, 80, 1)                   # 73x73x80
        self.conv4a = ConvBnRelu(80, 192, 3)                  # 71x71x192
        self.conv4b = ConvBnRelu(192, 256, 3, stride=2)       # 35x35x256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2b(self.conv2a(self.conv1a(x)))
        return self.conv4b(self.conv4a(self.conv3b(self.maxpool3a(x))))


class BlockA(nn.Module):
    """Fig. 10: Inception-ResNet-A, 35x35x256."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBnRelu(256, 32, 1)
        self.branch1 = nn.Sequential(ConvBnRelu(256, 32, 1), ConvBnRelu(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(ConvBnRelu(256, 32, 1), ConvBnRelu(32, 32, 3, padding=1),
                                     ConvBnRelu(32, 32, 3, padding=1))
        self.up = nn.Conv2d(96, 256, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)
        return self.act(x + self.scale * self.up(mixed))


class ReductionA(nn.Module):
    """Fig. 7 with k=192, l=192, m=256, n=384: 35x35x256 -> 17x17x896."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvBnRelu(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(ConvBnRelu(256, 192, 1), ConvBnRelu(192, 192, 3, padding=1),
                                     ConvBnRelu(192, 256, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class BlockB(nn.Module):
    """Fig. 11: Inception-ResNet-B, 17x17x896."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBnRelu(896, 128, 1)
        self.branch1 = nn.Sequential(ConvBnRelu(896, 128, 1), ConvBnRelu(128, 128, (1, 7), padding=(0, 3)),
                                     ConvBnRelu(128, 128, (7, 1), padding=(3, 0)))
        self.up = nn.Conv2d(256, 896, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.branch0(x), self.branch1(x)], 1)
        return self.act(x + self.scale * self.up(mixed))


class ReductionB(nn.Module):
    """Fig. 12: 17x17x896 -> 8x8x1792."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(ConvBnRelu(896, 256, 1), ConvBnRelu(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(ConvBnRelu(896, 256, 1), ConvBnRelu(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(ConvBnRelu(896, 256, 1), ConvBnRelu(256, 256, 3, padding=1),
                                     ConvBnRelu(256, 256, 3, stride=2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class BlockC(nn.Module):
    """Fig. 13: Inception-ResNet-C, 8x8x1792."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBnRelu(1792, 192, 1)
        self.branch1 = nn.Sequential(ConvBnRelu(1792, 192, 1), ConvBnRelu(192, 192, (1, 3), padding=(0, 1)),
                                     ConvBnRelu(192, 192, (3, 1), padding=(1, 0)))
        self.up = nn.Conv2d(384, 1792, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.branch0(x), self.branch1(x)], 1)
        return self.act(x + self.scale * self.up(mixed))


class InceptionResNetV1(ClassifierBase):
    """Inception-ResNet-v1 with configurable residual scales (paper: 0.1 to 0.3)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 global_pool: str = "avg", scale_a: float = 0.17, scale_b: float = 0.10,
                 scale_c: float = 0.20) -> None:
        super().__init__()
        for name, s in (("scale_a", scale_a), ("scale_b", scale_b), ("scale_c", scale_c)):
            if not 0.0 < s <= 1.0:
                raise ValueError(f"{name} must be in (0, 1] (the paper uses 0.1-0.3), got {s}")
        self.num_features = 1792
        self.stem = Stem(in_chans)
        self.repeat_a = nn.Sequential(*[BlockA(scale_a) for _ in range(5)])
        self.reduction_a = ReductionA()
        self.repeat_b = nn.Sequential(*[BlockB(scale_b) for _ in range(10)])
        self.reduction_b = ReductionB()
        self.repeat_c = nn.Sequential(*[BlockC(scale_c) for _ in range(5)])
        self.feature_info: List[Dict[str, Any]] = [
            dict(num_chs=256, reduction=8, module="stem"),
            dict(num_chs=896, reduction=16, module="reduction_a"),
            dict(num_chs=1792, reduction=32, module="repeat_c"),
        ]
        self._init_head(self.num_features, num_classes, drop_rate, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.repeat_a(self.stem(x))
        x = self.repeat_b(self.reduction_a(x))
        return self.repeat_c(self.reduction_b(x))


default_cfgs = generate_default_cfgs({
    "inception_resnet_v1.untrained": {
        "url": "", "num_classes": 1000, "input_size": (3, 299, 299), "pool_size": (8, 8),
        "crop_pct": 0.8975, "interpolation": "bicubic", "crop_mode": "center",
        "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "first_conv": "stem.conv1a.conv", "classifier": "last_linear",
    },
})


@register_model
def inception_resnet_v1(pretrained: bool = False, **kwargs: Any) -> InceptionResNetV1:
    return build_model_with_cfg(InceptionResNetV1, "inception_resnet_v1", pretrained,
                                feature_cfg=dict(flatten_sequential=True), **kwargs)
