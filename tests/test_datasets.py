"""The image folder reader: layouts, label mapping through label_names, bad files, selection."""
import os
import shutil

import numpy as np
import pytest

from pipeline.datasets import UNLABELED, open_image_folder, select
from pipeline.errors import UserError
from pipeline.labels import read_class_labels, read_wnids
from pipeline.preprocess import Preprocessing

PRE = Preprocessing((56, 56))


@pytest.fixture(scope="module")
def wnids(val_dir):
    return read_wnids(os.path.join(os.path.dirname(val_dir), "wnids.txt"))


def test_class_per_folder_maps_through_label_names_not_folder_order(val_dir, wnids):
    ds = open_image_folder(val_dir, wnids, require_labels=True)
    assert len(ds) == 5000 and ds.layout == "class-per-folder" and ds.labeled
    reversed_names = list(reversed(wnids))
    rev = open_image_folder(val_dir, reversed_names)
    by_path = {s.path: s.label for s in rev.samples}
    for s in ds.samples[:300]:
        assert by_path[s.path] == len(wnids) - 1 - s.label
        assert os.path.basename(os.path.dirname(s.path)) == wnids[s.label]


def test_flat_wnid_files_and_labels_txt_layouts(photos_dir, imagenet_val_dir, wnids):
    photos = open_image_folder(photos_dir, wnids, require_labels=True)
    assert photos.layout == "flat-labeled" and len(photos) == 200
    assert all(os.path.basename(s.path).startswith(wnids[s.label] + "_") for s in photos.samples)
    inet = open_image_folder(imagenet_val_dir, [f"c{i}" for i in range(1000)], require_labels=True)
    assert inet.layout == "labels.txt" and len(inet) == 100 and all(0 <= s.label < 1000 for s in inet.samples)
    unlabeled = open_image_folder(photos_dir)          # no label names: images still usable
    assert all(s.label == UNLABELED for s in unlabeled.samples)
    with pytest.raises(UserError, match="no label the model knows"):
        open_image_folder(photos_dir, require_labels=True)


def test_unknown_class_folders_are_a_clear_error(val_dir):
    with pytest.raises(UserError, match="not among the model's label names"):
        open_image_folder(val_dir, ["n00000000"])


def test_bad_files_are_counted_not_fatal_unless_strict(tmp_path, photos_dir, wnids):
    names = sorted(os.listdir(photos_dir))[:4]
    for n in names:
        shutil.copy(os.path.join(photos_dir, n), tmp_path / n)
    (tmp_path / names[1]).write_bytes((tmp_path / names[1]).read_bytes()[:200])   # truncated JPEG
    (tmp_path / f"{wnids[0]}_garbage.JPEG").write_bytes(b"not an image")
    ds = open_image_folder(str(tmp_path), wnids)
    images = np.concatenate([b.images for b in ds.batches(PRE, 2)])
    assert images.shape == (3, 3, 56, 56) and len(ds.skipped) == 2
    assert ds.skipped_report()["count"] == 2
    strict = open_image_folder(str(tmp_path), wnids, strict=True)
    with pytest.raises(UserError, match="unreadable image .*--strict"):
        list(strict.batches(PRE, 2))


def test_select_is_seeded_class_balanced_and_stable(calib_dir, wnids):
    ds = open_image_folder(calib_dir, wnids)
    a, b = select(ds.samples, 500, seed=7), select(ds.samples, 500, seed=7)
    assert a == b and len({s.path for s in a}) == 500
    counts = np.bincount([s.label for s in a], minlength=200)
    assert counts.min() >= 2 and counts.max() <= 3
    assert select(ds.samples, 500, seed=8) != a
    assert ds.subset(a).fingerprint() == ds.subset(b).fingerprint() != ds.fingerprint()


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        open_image_folder(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no images found"):
        open_image_folder(str(tmp_path))


def test_class_labels_are_the_sorted_wnids_whatever_the_file_order(tmp_path):
    (tmp_path / "wnids.txt").write_text("n02\nn01\nn03\n")
    (tmp_path / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tshark\n")
    names, descriptions = read_class_labels(str(tmp_path))
    assert names == ["n01", "n02", "n03"]
    assert descriptions == {"n01": "goldfish, Carassius auratus", "n02": "shark", "n03": "n03"}
