"""The shared trainer (test model on CPU, reference models on a GPU): loss goes down, the
checkpoint resumes, the model folder it writes loads back as a model source."""
import os

import numpy as np
import torch

from inception_deploy.pipeline.labels import read_wnids
from inception_deploy.pipeline.models.model_folder import save_model_folder
from inception_deploy.pipeline.models.sources import resolve_model
from inception_deploy.pipeline.models.timm_compat import import_timm
from tools import trainer


def test_trainer_learns_resumes_and_saves_a_loadable_folder(tmp_path, calib_dir):
    timm = import_timm()
    wnids = read_wnids(os.path.join(os.path.dirname(calib_dir), "wnids.txt"))
    x, y = trainer.load_uint8(calib_dir, wnids, limit_per_class=8)  # 1,600 images, decoded once
    keep = y < 4                                          # 4 classes x 8 images
    images, labels = torch.from_numpy(x[keep]), torch.from_numpy(y[keep])
    torch.manual_seed(0)
    model = timm.create_model("tiny_inception", num_classes=4, drop_rate=0.0)
    cfg = dict(model.pretrained_cfg)
    recipe = trainer.Recipe(epochs=6, batch_size=8, lr=0.05, weight_decay=0.0, label_smoothing=0.0, seed=0)
    ckpt = str(tmp_path / "ckpt.pt")
    losses = []
    first = trainer.train(model, images, labels, 56, cfg["mean"], cfg["std"], recipe, checkpoint=ckpt,
                          time_budget_s=0.0, on_epoch=lambda e, f: losses.append(f["loss"]))
    assert first["done"] == 0.0 and torch.load(ckpt, weights_only=True)["epoch"] == 1
    rest = trainer.train(model, images, labels, 56, cfg["mean"], cfg["std"], recipe, checkpoint=ckpt,
                         on_epoch=lambda e, f: losses.append(f["loss"]))
    assert rest["done"] == 1.0 and len(losses) == 6
    assert np.mean(losses[-2:]) < losses[0], losses
    model.eval()
    save_model_folder(model, str(tmp_path / "m"), "tiny_inception", cfg, wnids[:4], {}, dtype=torch.float16)
    loaded = resolve_model(f"local-dir:{tmp_path / 'm'}")
    assert loaded.num_classes == 4 and loaded.label_names == wnids[:4]
    st = torch.load(ckpt, weights_only=True)
    assert st["epoch"] == 6


def test_split_join_round_trip_and_refuses_corruption(tmp_path):
    import json

    import pytest

    from tools.split_join import join, split

    data = os.urandom(3 * 2**20 + 123)
    src = tmp_path / "w.safetensors"
    src.write_bytes(data)
    index = split(str(src), str(tmp_path / "parts"), part_mib=1.0)
    parts = json.load(open(index))["parts"]
    assert len(parts) == 4 and all(p["bytes"] <= 2**20 for p in parts)
    join(index, str(tmp_path / "joined"))
    assert (tmp_path / "joined").read_bytes() == data
    bad = tmp_path / "parts" / parts[2]["file"]
    bad.write_bytes(b"x" + bad.read_bytes()[1:])
    with pytest.raises(SystemExit, match="corrupt"):
        join(index, str(tmp_path / "again"))
    assert not (tmp_path / "again").exists()


def test_atomic_writes_get_the_usual_file_mode(tmp_path, test_model):
    from inception_deploy.pipeline.models.model_folder import save_model_folder

    save_model_folder(test_model.module, str(tmp_path / "m"), "tiny_inception", test_model.pretrained_cfg,
                      test_model.label_names, {})
    mask = os.umask(0)
    os.umask(mask)
    for name in ("model.safetensors", "config.json"):
        assert os.stat(tmp_path / "m" / name).st_mode & 0o777 == 0o666 & ~mask, name


def test_packed_shards_label_the_sorted_wnids_whatever_the_wnids_file_order(tmp_path):
    """The public Tiny-ImageNet copy lists its wnids unsorted; labels must follow the sorted ids
    that every model's label_names use, or a trained model's classes would all be mislabelled."""
    import json
    import shutil

    import pytest

    from inception_deploy.pipeline import paths
    from tools.train_reference import load_packed, pack, packed_label_names

    train = os.path.join(paths.TINY_IMAGENET, "train")
    wnids = sorted(os.listdir(train))[:3]
    src = tmp_path / "train"
    for w in wnids:
        (src / w).mkdir(parents=True)
        for name in sorted(os.listdir(os.path.join(train, w)))[:2]:
            shutil.copy(os.path.join(train, w, name), src / w / name)
    unsorted = list(reversed(wnids))
    pack(str(src), unsorted, str(tmp_path / "shards"), shard_mib=1)
    assert packed_label_names(str(tmp_path / "shards")) == wnids
    x, y = load_packed(str(tmp_path / "shards"))
    assert x.shape == (6, 3, 64, 64) and y.tolist() == [0, 0, 1, 1, 2, 2]   # samples come in path order
    names = json.load(open(tmp_path / "shards" / "labels.json"))["label_names"]
    assert names == wnids
    with pytest.raises(SystemExit, match="labels.json"):
        packed_label_names(str(tmp_path))
