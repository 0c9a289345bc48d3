"""The one preprocessing source: a model's pretrained_cfg -> the eval transform, a serialisable
description for manifests, and a camera-frame path. Device-side: numpy + PIL (+ OpenCV for
frames when installed), no torch, Python 3.8 syntax.

The PIL path reproduces timm's ``resolve_data_config`` + ``create_transform(is_training=False)``
bit for bit (torchvision's Resize on a PIL image *is* PIL's resize): resize the shorter side to
``floor(size / crop_pct)`` with the cfg's interpolation (PIL antialiases when shrinking), center
crop (``top = round((h - H) / 2)``, Python rounding), scale to [0, 1], normalise, HWC -> CHW.

The frame path takes an HxWx3 uint8 BGR array (OpenCV order) and does the same steps with
OpenCV: INTER_AREA when shrinking (close to PIL's antialiasing filter), the cfg's interpolation
when enlarging. It differs from the PIL path by resampling filters only (stated tolerance:
``FRAME_TOLERANCE``, checked on the shared photos in the tests).
"""
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np

from pipeline.errors import UserError

SCHEMA = "inception-deploy/preprocessing@1"
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
CROP_MODES = ("center", "squash")
# Frame path vs PIL path, on normalised values (units of one std), over the shared photos:
# mean absolute difference per image at most this.
FRAME_TOLERANCE = {"mean_abs": 0.03}


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn an image into the network input, as plain data."""

    input_size: Tuple[int, int]            # (H, W) of the network input
    crop_pct: float = 0.875
    crop_mode: str = "center"
    interpolation: str = "bilinear"
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise UserError(f"interpolation {self.interpolation!r} is not supported; "
                            f"expected one of {', '.join(INTERPOLATIONS)}")
        if self.crop_mode not in CROP_MODES:
            raise UserError(f"crop_mode {self.crop_mode!r} is not supported; expected one of "
                            f"{', '.join(CROP_MODES)} (set pretrained_cfg.crop_mode accordingly)")
        if not 0.0 < self.crop_pct <= 1.0:
            raise UserError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise UserError(f"input_size must be (H, W) with positive sides, got {self.input_size}")

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_pretrained_cfg(cls, cfg: Mapping[str, Any]) -> "Preprocessing":
        """As timm's ``resolve_data_config``: input_size (C, H, W), crop_pct, interpolation, mean, std."""
        size = cfg.get("test_input_size") or cfg.get("input_size") or (3, 224, 224)
        interp = cfg.get("interpolation") or "bilinear"
        if interp == "random":  # a training-time setting; timm evaluates with bilinear
            interp = "bilinear"
        return cls(
            input_size=(int(size[-2]), int(size[-1])),
            crop_pct=float(cfg.get("test_crop_pct") or cfg.get("crop_pct") or 0.875),
            crop_mode=str(cfg.get("crop_mode") or "center"),
            interpolation=str(interp),
            mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocessing":
        """Read the description written by :meth:`to_dict` (a manifest's ``preprocessing``)."""
        if d.get("schema") != SCHEMA:
            raise UserError(f"preprocessing schema {d.get('schema')!r} is not {SCHEMA!r}; "
                            "re-export the model with this version of inception-deploy")
        try:
            return cls(input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
                       crop_pct=float(d["crop_pct"]), crop_mode=str(d["crop_mode"]),
                       interpolation=str(d["interpolation"]),
                       mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                       std=tuple(float(v) for v in d["std"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise UserError(f"preprocessing description is incomplete ({e}); re-export the model") from None

    def to_dict(self) -> Dict[str, Any]:
        """Plain description for manifests, ONNX metadata and C++/embedded apps."""
        rh, rw = self.resize_size
        if self.crop_mode == "center" and rh == rw:
            resize = "resize the shorter side to %d (aspect kept; long side int(%d * long / short))" % (rh, rh)
        elif self.crop_mode == "center":
            resize = "resize keeping aspect so the image covers %dx%d" % (rh, rw)
        else:
            resize = "resize to %dx%d (aspect not kept)" % (rh, rw)
        return {
            "schema": SCHEMA,
            "input_size": list(self.input_size),
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "interpolation": self.interpolation,
            "resize_size": [rh, rw],
            "mean": list(self.mean),
            "std": list(self.std),
            "color": "RGB",
            "layout": "NCHW",
            "dtype": "float32",
            "steps": [
                "decode, convert to 3-channel RGB uint8",
                resize + " with %s interpolation (antialiased when shrinking, as PIL)" % self.interpolation,
                "center crop %dx%d (top = round((h - %d) / 2), left likewise)" % (
                    self.input_size[0], self.input_size[1], self.input_size[0]),
                "x / 255, then (x - mean) / std per channel",
                "HWC -> CHW, add batch dimension",
            ],
        }

    # -- geometry ---------------------------------------------------------------------------
    @property
    def resize_size(self) -> Tuple[int, int]:
        h, w = self.input_size
        return (int(math.floor(h / self.crop_pct)), int(math.floor(w / self.crop_pct)))

    def resized_shape(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) after the resize step for an image of ``height`` x ``width``."""
        rh, rw = self.resize_size
        if self.crop_mode == "squash":
            return rh, rw
        if rh == rw:  # torchvision Resize(int): shorter side -> rh, longer side truncated
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = rh, int(rh * long / short)
            return (new_long, new_short) if width <= height else (new_short, new_long)
        ratio = min(height / rh, width / rw)  # timm ResizeKeepRatio(longest=0)
        return int(round(height / ratio)), int(round(width / ratio))

    def _crop_box(self, height: int, width: int) -> Tuple[int, int, int, int]:
        ch, cw = self.input_size
        if height < ch or width < cw:
            raise UserError(f"resized image {height}x{width} is smaller than the crop {ch}x{cw}")
        top = int(round((height - ch) / 2.0))
        left = int(round((width - cw) / 2.0))
        return top, left, top + ch, left + cw

    # -- the PIL path (reference, bit-exact with timm) -----------------------------------------
    def image(self, img: Any) -> np.ndarray:
        """PIL image (any mode) -> (3, H, W) float32, exactly as timm's eval transform."""
        from PIL import Image

        img = to_rgb(img)
        w, h = img.size
        nh, nw = self.resized_shape(h, w)
        if (nh, nw) != (h, w):
            img = img.resize((nw, nh), _PIL_FILTERS[self.interpolation](Image))
        top, left, bottom, right = self._crop_box(nh, nw)
        arr = np.asarray(img, dtype=np.uint8)[top:bottom, left:right]
        return self._normalise_hwc(arr)

    # -- the camera-frame path ----------------------------------------------------------------
    def frame(self, frame: Any) -> np.ndarray:
        """HxWx3 uint8 BGR frame (OpenCV order) -> (3, H, W) float32, no torch, no PIL needed."""
        check_frame(frame)
        h, w = frame.shape[:2]
        nh, nw = self.resized_shape(h, w)
        rgb = frame[:, :, ::-1]
        if (nh, nw) != (h, w):
            rgb = _resize_rgb(rgb, nh, nw, self.interpolation)
        top, left, bottom, right = self._crop_box(nh, nw)
        return self._normalise_hwc(rgb[top:bottom, left:right])

    def _normalise_hwc(self, arr: np.ndarray) -> np.ndarray:
        scale = (1.0 / (255.0 * np.asarray(self.std, dtype=np.float32))).astype(np.float32)
        bias = (-np.asarray(self.mean, dtype=np.float32) / np.asarray(self.std, dtype=np.float32))
        out = arr.astype(np.float32) * scale + bias.astype(np.float32)
        return np.ascontiguousarray(out.transpose(2, 0, 1))


def _PIL_BILINEAR(Image: Any) -> Any:
    return Image.Resampling.BILINEAR if hasattr(Image, "Resampling") else Image.BILINEAR


def _PIL_BICUBIC(Image: Any) -> Any:
    return Image.Resampling.BICUBIC if hasattr(Image, "Resampling") else Image.BICUBIC


def _PIL_NEAREST(Image: Any) -> Any:
    return Image.Resampling.NEAREST if hasattr(Image, "Resampling") else Image.NEAREST


_PIL_FILTERS = {"bilinear": _PIL_BILINEAR, "bicubic": _PIL_BICUBIC, "nearest": _PIL_NEAREST}


def to_rgb(img: Any) -> Any:
    """Greyscale, palette, CMYK, RGBA, 16-bit... -> RGB (alpha dropped, as timm's loaders do)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bits first
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        from PIL import Image
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


def check_frame(frame: Any) -> None:
    """Raise ValueError naming what was expected unless ``frame`` is a non-empty HxWx3 uint8 array."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"expected an HxWx3 uint8 numpy array (BGR, as OpenCV reads), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR frame, got dtype {frame.dtype} "
                         "(convert with frame.astype(np.uint8) or cv2.convertScaleAbs)")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR frame, got shape {frame.shape} "
                         "(greyscale: cv2.cvtColor(f, cv2.COLOR_GRAY2BGR); BGRA: cv2.COLOR_BGRA2BGR)")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"expected a non-empty HxWx3 frame, got shape {frame.shape} (camera returned no image?)")


def _resize_rgb(rgb: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    try:
        import cv2
    except ImportError:  # no OpenCV: PIL gives the reference result
        from PIL import Image
        img = Image.fromarray(np.ascontiguousarray(rgb))
        return np.asarray(img.resize((width, height), _PIL_FILTERS[interpolation](Image)))
    shrinking = height < rgb.shape[0] or width < rgb.shape[1]
    if shrinking and interpolation != "nearest":
        flag = cv2.INTER_AREA
    else:
        flag = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}[interpolation]
    return cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=flag)


def stack(items: Sequence[np.ndarray]) -> np.ndarray:
    """List of (3, H, W) arrays -> contiguous (N, 3, H, W) float32 batch."""
    return np.ascontiguousarray(np.stack(items).astype(np.float32, copy=False))
