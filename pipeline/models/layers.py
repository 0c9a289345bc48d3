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
