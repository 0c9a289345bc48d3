"""TinyInception: an Inception-v4-shaped network small enough to train on two CPU cores.

Random-init Inception models give the same output for every input, so parity, accuracy and
drift tests need trained weights. This is the architecture of the project's trained test model
(``models/tiny_inception.tiny200``): the same block kinds as Inception-v4 (a stem, Inception-A,
Reduction-A, Inception-B with 1x7/7x1 factorisation, Reduction-B, Inception-C with 1x3/3x1
splits), each ending in a Concat with pooling branches, at 56x56 input and a fraction of the width (about 1 M parameters, 50 MMACs).
Registered with timm as ``tiny_inception``.
"""
from typing import Any, Dict, List

import torch
from torch import nn
from timm.models._builder import build_model_with_cfg
from timm.models._registry import generate_default_cfgs, register_model

from inception_deploy.pipeline.models.layers import ClassifierBase, ConvBnRelu


class InceptionA(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch0 = ConvBnRelu(in_ch, 24, 1)
        self.branch1 = nn.Sequential(ConvBnRelu(in_ch, 16, 1), ConvBnRelu(16, 24, 3, padding=1))
        self.branch2 = nn.Sequential(ConvBnRelu(in_ch, 16, 1), ConvBnRelu(16, 24, 3, padding=1),
                                     ConvBnRelu(24, 24, 3, padding=1))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                                     ConvBnRelu(in_ch, 24, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionA(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch0 = ConvBnRelu(in_ch, 64, 3, stride=2, padding=1)
        self.branch1 = nn.Sequential(ConvBnRelu(in_ch, 32, 1), ConvBnRelu(32, 48, 3, padding=1),
                                     ConvBnRelu(48, 64, 3, stride=2, padding=1))
        self.branch2 = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionB(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch0 = ConvBnRelu(in_ch, 64, 1)
        self.branch1 = nn.Sequential(ConvBnRelu(in_ch, 48, 1), ConvBnRelu(48, 56, (1, 7), padding=(0, 3)),
                                     ConvBnRelu(56, 64, (7, 1), padding=(3, 0)))
        self.branch2 = nn.Sequential(ConvBnRelu(in_ch, 48, 1), ConvBnRelu(48, 56, (7, 1), padding=(3, 0)),
                                     ConvBnRelu(56, 64, (1, 7), padding=(0, 3)))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                                     ConvBnRelu(in_ch, 32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionB(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(ConvBnRelu(in_ch, 64, 1), ConvBnRelu(64, 96, 3, stride=2, padding=1))
        self.branch1 = nn.Sequential(ConvBnRelu(in_ch, 64, 1), ConvBnRelu(64, 64, (1, 7), padding=(0, 3)),
                                     ConvBnRelu(64, 80, (7, 1), padding=(3, 0)),
                                     ConvBnRelu(80, 80, 3, stride=2, padding=1))
        self.branch2 = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionC(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch0 = ConvBnRelu(in_ch, 64, 1)
        self.branch1_0 = ConvBnRelu(in_ch, 96, 1)
        self.branch1_1a = ConvBnRelu(96, 64, (1, 3), padding=(0, 1))
        self.branch1_1b = ConvBnRelu(96, 64, (3, 1), padding=(1, 0))
        self.branch2_0 = nn.Sequential(ConvBnRelu(in_ch, 96, 1), ConvBnRelu(96, 112, (3, 1), padding=(1, 0)),
                                       ConvBnRelu(112, 128, (1, 3), padding=(0, 1)))
        self.branch2_1a = ConvBnRelu(128, 64, (1, 3), padding=(0, 1))
        self.branch2_1b = ConvBnRelu(128, 64, (3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                                     ConvBnRelu(in_ch, 64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1_0(x)
        b2 = self.branch2_0(x)
        return torch.cat([self.branch0(x), self.branch1_1a(b1), self.branch1_1b(b1),
                          self.branch2_1a(b2), self.branch2_1b(b2), self.branch3(x)], 1)


class TinyInception(ClassifierBase):
    """Stem -> 2 x A -> Red-A -> 2 x B -> Red-B -> C -> pool -> dropout -> linear (56x56 input)."""

    def __init__(self, num_classes: int = 200, in_chans: int = 3, drop_rate: float = 0.2,
                 global_pool: str = "avg") -> None:
        super().__init__()
        self.num_features = 384
        self.features = nn.Sequential(
            ConvBnRelu(in_chans, 24, 3, stride=2, padding=1),   # 28x28x24
            ConvBnRelu(24, 64, 3, padding=1),                  # 28x28x64
            nn.MaxPool2d(3, stride=2, padding=1),               # 14x14x64
            InceptionA(64), InceptionA(96),                     # 14x14x96
            ReductionA(96),                                     # 7x7x224
            InceptionB(224), InceptionB(224),                   # 7x7x224
            ReductionB(224),                                    # 4x4x400
            InceptionC(400),                                    # 4x4x384
        )
        self.feature_info: List[Dict[str, Any]] = [
            dict(num_chs=96, reduction=4, module="features.4"),
            dict(num_chs=224, reduction=8, module="features.7"),
            dict(num_chs=384, reduction=14, module="features.9"),
        ]
        self._init_head(self.num_features, num_classes, drop_rate, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


default_cfgs = generate_default_cfgs({
    "tiny_inception.tiny200": {
        "url": "", "num_classes": 200, "input_size": (3, 56, 56), "pool_size": (4, 4),
        "crop_pct": 0.875, "interpolation": "bilinear", "crop_mode": "center",
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "features.0.conv", "classifier": "last_linear",
    },
})


@register_model
def tiny_inception(pretrained: bool = False, **kwargs: Any) -> TinyInception:
    return build_model_with_cfg(TinyInception, "tiny_inception", pretrained,
                                feature_cfg=dict(flatten_sequential=True), **kwargs)
