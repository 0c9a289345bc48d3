"""Small building blocks shared by the project's own Inception architectures."""
from typing import Tuple, Union

import torch
from torch import nn

Size2 = Union[int, Tuple[int, int]]


class ConvBnRelu(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU: the unit every Inception paper uses."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: Size2, stride: int = 1,
                 padding: Size2 = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ClassifierBase(nn.Module):
    """timm's classifier API over ``global_pool -> head_drop -> last_linear``.

    Subclasses build their trunk and implement ``forward_features``; timm's tools (create_model,
    reset_classifier, forward_head(pre_logits=True)) then work on them as on timm's own models.
    """

    def _init_head(self, num_features: int, num_classes: int, drop_rate: float, global_pool: str) -> None:
        from timm.layers import SelectAdaptivePool2d

        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = num_features
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.last_linear

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self._init_head(self.num_features, num_classes, self.head_drop.p, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.last_linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
