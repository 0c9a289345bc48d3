"""The one preprocessing source: a model's pretrained_cfg -> the eval transform, a serialisable
description for manifests, and a camera-frame path. Device-side: numpy + PIL (+ OpenCV for
frames when installed), no torch, Python 3.8 syntax.

The PIL path reproduces timm's ``resolve_data_config`` + ``create_transform(is_training=False)``
bit for bit (torchvision's Resize on a PIL image *is* PIL's resize): resize the shorter side to
``floor(size / crop_pct)`` with the cfg's interpolation (PIL antialiases when shrinking), center
crop (``top = round((h - H) / 2)``, Python rounding), scale to [0, 1], normalise, HWC -> CHW.

The frame path takes an HxWx3 uint8 BGR array (OpenCV order). By default ("fast") it runs
:mod:`pipeline.frame_plan`: only the crop's source pixels are converted and filtered, with PIL's
kernels, and a box reduction first where a frame shrinks very much; its agreement with this exact
path is measured (docs/runtime.md). "exact" keeps the whole-frame reference: with Pillow it goes
through the PIL path (bit-exact); without Pillow it does the same steps in vectorised numpy, with
PIL's own separable filters (triangle / a=-0.5 cubic, widened by the scale factor when shrinking;
the taps are cached per frame size), within ``FRAME_TOLERANCE`` of the PIL path. OpenCV's
INTER_AREA / INTER_CUBIC were measured 0.12 std-units off on the shared photos.
"""
import functools
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np

from inception_deploy.pipeline import documents
from inception_deploy.pipeline.errors import UserError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
CROP_MODES = ("center", "squash")
# Frame path vs PIL path, in 8-bit grey levels before normalisation (measured on the 200 shared
# photos, 68x121 to 2400x1600, greyscale ones included: max 1 level; worst image mean 0.0048 level
# at 56x56 bilinear, 0.0004 at 299x299 bicubic). The mean limit keeps a 4x margin.
FRAME_TOLERANCE = {"max_levels": 1.0, "mean_levels": 0.02}
# The fast frame path (pipeline.frame_plan, no box step at these sizes) vs the PIL path on the same
# 200 photos: max 2 levels (bicubic), worst image mean 0.0039 level (56x56 bilinear), 0.0013 (299x299).
FAST_FRAME_TOLERANCE = {"max_levels": 2.0, "mean_levels": 0.02}
FRAME_PATHS = ("fast", "exact")


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
        documents.expect_tag(d, documents.PREPROCESSING, "preprocessing description",
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
            "schema": documents.PREPROCESSING,
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
    def frame(self, frame: Any, path: str = "fast", resampler: str = "auto") -> np.ndarray:
        """HxWx3 uint8 BGR frame (OpenCV order) -> (3, H, W) float32, no torch.

        ``path``: "fast" (default) runs :mod:`pipeline.frame_plan` (only the crop's source pixels,
        a box reduction where the frame shrinks a lot; top-1 agreement and KL against the exact
        path are measured in docs/runtime.md), "exact" the reference resize of the whole frame
        (bit-exact with :meth:`image` under Pillow, for parity checks).
        ``resampler``: "pil" (Pillow), "numpy" (no Pillow needed: the fast plan in float, or the
        exact path within ``FRAME_TOLERANCE``), "auto" Pillow when it is installed.
        """
        check_frame(frame)
        if path not in FRAME_PATHS:
            raise ValueError(f"path must be one of {', '.join(FRAME_PATHS)}, got {path!r}")
        if resampler not in ("auto", "pil", "numpy"):
            raise ValueError(f"resampler must be 'auto', 'pil' or 'numpy', got {resampler!r}")
        use_pil = resampler == "pil" or (resampler == "auto" and _have_pil())
        if path == "fast" and not (use_pil and self.interpolation == "nearest"):
            from inception_deploy.pipeline import frame_plan
            plan = frame_plan.plan_frame(self, frame.shape[0], frame.shape[1])
            if use_pil:
                return self._normalise_uint8(frame_plan.run_pillow(frame, plan))
            return self._normalise_hwc(frame_plan.run_numpy(frame, plan))
        rgb = frame[:, :, ::-1]
        if use_pil:
            from PIL import Image
            return self.image(Image.fromarray(np.ascontiguousarray(rgb)))
        h, w = frame.shape[:2]
        nh, nw = self.resized_shape(h, w)
        box = self._crop_box(nh, nw)
        if (nh, nw) != (h, w):
            return self._normalise_hwc(_resize_crop_rgb(rgb, (nh, nw), box, self.interpolation))
        top, left, bottom, right = box
        return self._normalise_hwc(rgb[top:bottom, left:right])

    def _normalise_hwc(self, arr: np.ndarray) -> np.ndarray:
        scale = (1.0 / (255.0 * np.asarray(self.std, dtype=np.float32))).astype(np.float32)
        bias = (-np.asarray(self.mean, dtype=np.float32) / np.asarray(self.std, dtype=np.float32))
        out = arr.astype(np.float32) * scale + bias.astype(np.float32)
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def _normalise_uint8(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w, 3) RGB uint8 -> (3, h, w) float32 through a 256-entry table per channel: the same
        values as :meth:`_normalise_hwc`, written straight into CHW order."""
        table = _normalise_table(self.mean, self.std)
        out = np.empty((3,) + rgb.shape[:2], dtype=np.float32)
        for c in range(3):
            np.take(table[c], rgb[:, :, c], out=out[c])
        return out


@functools.lru_cache(maxsize=8)
def _normalise_table(mean: Tuple[float, ...], std: Tuple[float, ...]) -> np.ndarray:
    levels = np.arange(256, dtype=np.float32)[None, :]
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).astype(np.float32)[:, None]
    bias = (-np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).astype(np.float32)[:, None]
    return levels * scale + bias


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


@functools.lru_cache(maxsize=1)
def _have_pil() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def _pil_filter(interpolation: str) -> Tuple[float, Any]:
    """PIL's resampling filters (Resample.c): (support, kernel)."""
    if interpolation == "bilinear":
        return 1.0, lambda x: np.clip(1.0 - np.abs(x), 0.0, None)

    def bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
        x = np.abs(x)
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
        return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))

    return 2.0, bicubic


@functools.lru_cache(maxsize=32)
def _taps(in_size: int, out_size: int, interpolation: str) -> Tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (out_size, K) of one resampling axis, as PIL computes them.

    Cached: a camera's frames share one size, so each axis is computed once per stream.
    """
    support, kernel = _pil_filter(interpolation)
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support *= filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    width = int((xmax - xmin).max())
    offsets = np.arange(width)
    idx = xmin[:, None] + offsets[None, :]
    weights = kernel((idx - centers[:, None] + 0.5) / filterscale)
    weights = np.where(idx < xmax[:, None], weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(total != 0.0, weights / np.where(total == 0.0, 1.0, total), 0.0)
    return np.minimum(idx, in_size - 1), weights.astype(np.float32)


def _resample_rows(img: np.ndarray, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Resample axis 0 of a row-contiguous 2-D array: out[i] = sum_k w[i, k] * img[idx[i, k]]."""
    acc = np.zeros((idx.shape[0], img.shape[1]), dtype=np.float32)
    for k in range(idx.shape[1]):
        acc += img[idx[:, k]] * weights[:, k:k + 1]
    # PIL rounds each pass to 8 bits; doing the same keeps the two paths within one grey level
    np.floor(acc + 0.5, out=acc)
    return np.clip(acc, 0.0, 255.0, out=acc)


def _resize_crop_rgb(rgb: np.ndarray, size: Tuple[int, int], box: Tuple[int, int, int, int],
                     interpolation: str) -> np.ndarray:
    """Resize ``rgb`` (h, w, 3) to ``size`` and return only the ``box`` (top, left, bottom, right).

    PIL's antialiased resampling, computed for the cropped output pixels only and only from
    the source rows/columns they touch, one row-contiguous pass per axis.
    """
    (h, w), (top, left, bottom, right) = rgb.shape[:2], box
    if interpolation == "nearest":
        rows = np.minimum(((np.arange(top, bottom) + 0.5) * h / size[0]).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(left, right) + 0.5) * w / size[1]).astype(np.int64), w - 1)
        return rgb[rows][:, cols].astype(np.float32)
    ridx, rw = _taps(h, size[0], interpolation)
    cidx, cw = _taps(w, size[1], interpolation)
    ridx, rw, cidx, cw = ridx[top:bottom], rw[top:bottom], cidx[left:right], cw[left:right]
    r0, r1 = (int(ridx.min()), int(ridx.max()) + 1) if size[0] != h else (top, bottom)
    c0, c1 = (int(cidx.min()), int(cidx.max()) + 1) if size[1] != w else (left, right)
    src = rgb[r0:r1, c0:c1].astype(np.float32)            # only the source pixels the crop uses
    rows = r1 - r0
    if size[1] != w:   # horizontal pass first, as PIL (its 8-bit rounding and clipping order)
        cols = np.ascontiguousarray(src.transpose(1, 0, 2)).reshape(c1 - c0, -1)
        cols = _resample_rows(cols, cidx - c0, cw)
        src = np.ascontiguousarray(cols.reshape(right - left, rows, 3).transpose(1, 0, 2))
    if size[0] != h:
        src = _resample_rows(src.reshape(rows, -1), ridx - r0, rw).reshape(bottom - top, right - left, 3)
    return src


def stack(items: Sequence[np.ndarray]) -> np.ndarray:
    """List of (3, H, W) arrays -> contiguous (N, 3, H, W) float32 batch."""
    return np.ascontiguousarray(np.stack(items).astype(np.float32, copy=False))
