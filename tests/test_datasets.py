"""The image folder reader: layouts, label mapping through label_names, bad files, selection."""
import os
import shutil

import numpy as np
import pytest

from inception_deploy.pipeline.datasets import UNLABELED, open_image_folder, select
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.labels import read_class_labels, read_wnids
from inception_deploy.pipeline.preprocess import Preprocessing

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


# -- one loader: EXIF orientation, GIFs, unreadable files counted once ---------------------------------
def _exif_rotated_copy(src, dst, orientation=6, fmt="JPEG"):
    """``src``'s pixels stored unrotated with an EXIF orientation tag (as a phone held sideways writes)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    with Image.open(src) as img:
        img.convert("RGB").save(dst, format=fmt, exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_as_cv2_imread_does_on_every_path(tmp_path, photos_dir, wnids):
    import cv2

    from inception_deploy.pipeline.datasets import load_image

    name = "n01443537_goldfish.JPEG"
    with_tag = tmp_path / name
    _exif_rotated_copy(os.path.join(photos_dir, name), str(with_tag))
    stored = __import__("PIL.Image", fromlist=["Image"]).open(str(with_tag)).size
    upright = load_image(str(with_tag))
    assert upright.size == stored[::-1]                              # rotated a quarter turn
    frame = cv2.imread(str(with_tag), cv2.IMREAD_COLOR)                 # what the runtime's camera apps read
    assert np.array_equal(np.asarray(upright.convert("RGB"))[:, :, ::-1], frame)
    pre = Preprocessing((56, 56), interpolation="bicubic")
    ds = open_image_folder(str(tmp_path), wnids)
    batch = next(ds.batches(pre, 4))                                    # bench / calibrate / export parity
    assert np.allclose(batch.images[0], pre.frame(frame), atol=1e-6)


def test_gif_files_are_read_not_silently_ignored(tmp_path, photos_dir, wnids):
    from PIL import Image

    name = "n01443537_goldfish"
    with Image.open(os.path.join(photos_dir, name + ".JPEG")) as img:
        img.convert("RGB").save(str(tmp_path / (name + ".gif")))
    ds = open_image_folder(str(tmp_path), wnids, require_labels=True)
    assert [os.path.basename(s.path) for s in ds.samples] == [name + ".gif"]
    assert next(ds.batches(PRE, 1)).images.shape == (1, 3, 56, 56) and not ds.skipped


def test_an_unreadable_file_is_counted_once_however_often_it_is_read(tmp_path, photos_dir, wnids):
    shutil.copy(os.path.join(photos_dir, "n01443537_goldfish.JPEG"), str(tmp_path))
    (tmp_path / f"{wnids[0]}_bad.JPEG").write_bytes(b"not an image")
    ds = open_image_folder(str(tmp_path), wnids)
    for _ in range(3):
        list(ds.batches(PRE, 2))
    assert ds.skipped_report()["count"] == 1
    readable = open_image_folder(str(tmp_path), wnids).readable()
    assert len(readable) == 1 and len(readable.skipped) == 1


# -- the image set's fingerprint is its content ---------------------------------------------------------
def test_fingerprint_changes_with_content_under_the_same_names(tmp_path, photos_dir):
    from inception_deploy.pipeline.hashing import HashCache

    names = sorted(os.listdir(photos_dir))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i, n in enumerate(names[:5]):
        shutil.copy(os.path.join(photos_dir, n), str(a / n))
        shutil.copy(os.path.join(photos_dir, names[10 + i]), str(b / n))   # other pictures, same file names
    fa, fb = open_image_folder(str(a)).fingerprint(), open_image_folder(str(b)).fingerprint()
    assert fa != fb
    assert open_image_folder(str(a)).fingerprint() == fa                  # stable
    # the hash cache is keyed so that restoring a modified file's size and mtime does not fool it
    cache = HashCache(str(tmp_path / "cache"))
    target = a / names[0]
    before = cache.sha256(str(target))
    st = os.stat(str(target))
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(str(target), ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(str(target)) == st.st_size
    assert HashCache(str(tmp_path / "cache")).sha256(str(target)) != before
