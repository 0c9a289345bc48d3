"""The one preprocessing source against timm's own eval transform, and the camera-frame path."""
import os

import numpy as np
import pytest
from PIL import Image

from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.preprocess import FAST_FRAME_TOLERANCE, FRAME_TOLERANCE, Preprocessing, check_frame

CFGS = {
    "inception_v4": {"input_size": (3, 299, 299), "interpolation": "bicubic", "crop_pct": 0.875,
                     "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "tiny_inception": {"input_size": (3, 56, 56), "interpolation": "bilinear", "crop_pct": 0.875,
                       "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "non_square_squash": {"input_size": (3, 200, 160), "interpolation": "bilinear", "crop_pct": 0.9,
                          "crop_mode": "squash", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)},
}


def _photos(photos_dir, n=None):
    names = sorted(os.listdir(photos_dir))
    grey = [x for x in names if Image.open(os.path.join(photos_dir, x)).mode != "RGB"]
    chosen = (names[::max(1, len(names) // n)][:n] if n else names)
    return [os.path.join(photos_dir, x) for x in sorted(set(chosen) | set(grey))]


@pytest.mark.parametrize("name", sorted(CFGS))
def test_pil_path_is_bit_exact_with_timm_eval_transform(name, photos_dir):
    from inception_deploy.pipeline.models.timm_compat import import_timm

    timm = import_timm()
    cfg = CFGS[name]
    transform = timm.data.create_transform(**timm.data.resolve_data_config(pretrained_cfg=cfg), is_training=False)
    pre = Preprocessing.from_pretrained_cfg(cfg)
    for path in _photos(photos_dir, 12):
        with Image.open(path) as img:
            img = img.convert("RGB")
            ours = pre.image(img)
            ref = transform(img).numpy()
        assert ours.shape == ref.shape == (3,) + tuple(cfg["input_size"][1:])
        np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6, err_msg=path)


def test_greyscale_cmyk_rgba_are_converted(photos_dir):
    pre = Preprocessing.from_pretrained_cfg(CFGS["tiny_inception"])
    path = _photos(photos_dir, 1)[0]
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    for mode in ("L", "CMYK", "RGBA", "P", "I;16"):
        converted = rgb.convert(mode) if mode != "I;16" else Image.fromarray(
            (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
        out = pre.image(converted)
        assert out.shape == (3, 56, 56) and out.dtype == np.float32 and np.isfinite(out).all(), mode


def test_frame_path_matches_pil_path_within_stated_tolerance(photos_dir):
    """Exact path: Pillow resampler bit-exact, numpy resampler within FRAME_TOLERANCE; fast path (the
    default): within FAST_FRAME_TOLERANCE. Every shared photo (68x121 .. 2400x1600, greyscale ones
    included) as an OpenCV BGR frame."""
    for name in ("inception_v4", "tiny_inception"):
        pre = Preprocessing.from_pretrained_cfg(CFGS[name])
        levels = 255.0 * np.asarray(pre.std, dtype=np.float32).reshape(3, 1, 1)  # back to grey levels
        worst = {"numpy": [0.0, 0.0], "fast": [0.0, 0.0]}
        for path in _photos(photos_dir):
            with Image.open(path) as img:
                rgb = img.convert("RGB")
            frame = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
            ref = pre.image(rgb)
            assert np.array_equal(pre.frame(frame, path="exact"), ref), path          # Pillow resampler: bit-exact
            for key, got in (("numpy", pre.frame(frame, path="exact", resampler="numpy")), ("fast", pre.frame(frame))):
                d = np.abs(got - ref) * levels
                worst[key] = [max(worst[key][0], float(d.max())), max(worst[key][1], float(d.mean()))]
        assert worst["numpy"][0] <= FRAME_TOLERANCE["max_levels"] + 1e-3, (name, worst)
        assert worst["numpy"][1] <= FRAME_TOLERANCE["mean_levels"], (name, worst)
        assert worst["fast"][0] <= FAST_FRAME_TOLERANCE["max_levels"] + 1e-3, (name, worst)
        assert worst["fast"][1] <= FAST_FRAME_TOLERANCE["mean_levels"], (name, worst)


@pytest.mark.parametrize("bad, needle", [
    ([[1, 2, 3]], "numpy array"),
    (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
    (np.zeros((10, 10), dtype=np.uint8), "HxWx3"),
    (np.zeros((10, 10, 4), dtype=np.uint8), "HxWx3"),
    (np.zeros((0, 10, 3), dtype=np.uint8), "non-empty"),
])
def test_bad_frames_raise_value_error_saying_what_was_expected(bad, needle):
    with pytest.raises(ValueError, match=needle):
        check_frame(bad)


def test_description_round_trips_and_rejects_bad_values():
    pre = Preprocessing.from_pretrained_cfg(CFGS["inception_v4"])
    d = pre.to_dict()
    assert d["resize_size"] == [341, 341] and d["input_size"] == [299, 299] and d["steps"]
    assert Preprocessing.from_dict(d) == pre
    with pytest.raises(UserError, match="schema"):
        Preprocessing.from_dict({**d, "schema": "other@9"})
    with pytest.raises(UserError, match="a JSON list, not a 'inception-deploy/preprocessing@1'"):
        Preprocessing.from_dict([d])                      # type: ignore[arg-type]
    with pytest.raises(UserError, match="interpolation"):
        Preprocessing((224, 224), interpolation="lanczos9")
    with pytest.raises(UserError, match="crop_mode"):
        Preprocessing((224, 224), crop_mode="border")


def test_resize_geometry_follows_torchvision_shorter_side_rule():
    pre = Preprocessing((299, 299), crop_pct=0.875)
    assert pre.resized_shape(480, 640) == (341, 454)   # int(341 * 640 / 480) = 454
    assert pre.resized_shape(1600, 68) == (8023, 341)
    assert pre.resized_shape(341, 341) == (341, 341)
