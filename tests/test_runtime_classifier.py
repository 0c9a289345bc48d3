"""runtime.Classifier end to end on the ONNX Runtime path, with the trained test model and real images.

Frames come from the shared photos (real resolutions and aspect ratios, greyscale ones included)
and the shared val images; the benchmark stage's runner is used as the reference for "same
tensor in, same logits out".
"""
import os
import shutil
import threading

import numpy as np
import pytest

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.pipeline.labels import read_words
from inception_deploy.runtime import Classifier, Prediction


@pytest.fixture(scope="module")
def onnx_path(test_model_onnx) -> str:
    return test_model_onnx


@pytest.fixture(scope="module")
def clf(onnx_path):
    with Classifier.load(onnx_path, threads=2) as c:
        yield c


def photo_frames(photos_dir, count=None):
    """(name, BGR uint8 frame) as a camera app gets them: decoded by OpenCV, greyscale expanded to 3 channels."""
    import cv2

    names = sorted(os.listdir(photos_dir))
    if count:
        names = names[:: max(1, len(names) // count)][:count]
    for name in names:
        frame = cv2.imread(os.path.join(photos_dir, name), cv2.IMREAD_COLOR)
        assert frame is not None and frame.dtype == np.uint8 and frame.ndim == 3, name
        yield name, frame


def test_load_picks_onnxruntime_and_reads_preprocessing_and_human_labels(clf, onnx_path, photos_dir):
    m = mf.read(onnx_path)
    assert clf.backend.name == "onnxruntime-cpu"
    assert clf.preprocessing.to_dict() == m.preprocessing
    assert clf.labels == m.model.label_names and clf.num_classes == 200
    words = read_words(os.path.join(os.path.dirname(photos_dir), "tiny-imagenet-200", "words.txt"))
    i = clf.labels.index("n01443537")
    assert clf.label_names[i] == "goldfish" == words["n01443537"].split(",")[0]   # a name, not a WordNet id
    assert all(name and not name.startswith("n0") for name in clf.label_names)
    assert clf.max_batch is None                             # dynamic batch: no fixed limit on ONNX Runtime
    d = clf.backend.describe()
    assert d["providers"] == ["CPUExecutionProvider"] and d["threads"] == 2 and d["onnxruntime"]


def test_classify_photo_frames_sorted_probabilities_and_same_logits_as_the_backend(clf, photos_dir):
    for name, frame in photo_frames(photos_dir, count=12):
        top = clf.classify(frame, top_k=5)
        assert len(top) == 5 and all(isinstance(p, Prediction) for p in top)
        probs = [p.probability for p in top]
        assert probs == sorted(probs, reverse=True) and 0.0 < sum(probs) <= 1.0 + 1e-9
        assert all(clf.labels[p.label_id] == p.label and clf.label_names[p.label_id] == p.label_name for p in top)
        logits = clf.backend.infer(clf.preprocessing.frame(frame)[None])[0]
        assert top[0].label_id == int(np.argmax(logits))
        full = clf.classify(frame, top_k=1000)               # top_k larger than the classes: all of them
        assert len(full) == 200 and abs(sum(p.probability for p in full) - 1.0) < 1e-9
        assert [p.label_id for p in full[:5]] == [p.label_id for p in top]


def test_trained_model_recognises_the_photos(clf, photos_dir):
    """Not an accuracy claim, a sanity check that labels line up: the photo's class is usually in the top 5."""
    hits = total = 0
    for name, frame in photo_frames(photos_dir, count=40):
        wnid = name.split("_")[0]
        hits += wnid in [p.label for p in clf.classify(frame, top_k=5)]
        total += 1
    assert hits / total >= 0.3, (hits, total)


def test_same_tensor_gives_identical_logits_to_the_benchmark_runner(clf, onnx_path, val_dir):
    from inception_deploy.benchmarks.runners.factory import candidate_for, open_runner
    from inception_deploy.pipeline.datasets import open_image_folder, select

    ds = open_image_folder(val_dir, clf.labels)
    ds = ds.subset(select(ds.samples, 24, seed=3))
    batch = next(ds.batches(clf.preprocessing, batch_size=24)).images
    with open_runner(candidate_for(onnx_path), threads=2) as runner:
        assert type(runner) is type(clf.backend)             # one implementation, shared
        bench = runner.infer(batch)
    ours = clf.logits(batch)
    assert ours.dtype == np.float32 and ours.shape == (24, 200)
    assert np.array_equal(ours, bench)
    # and one frame at a time through classify() gives the same logits as the batch, within float noise
    single = np.concatenate([clf.logits(batch[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(single, ours[:4], rtol=1e-5, atol=1e-5)


def test_classify_batch_matches_classify_and_respects_max_batch(clf, photos_dir):
    frames = [f for _, f in photo_frames(photos_dir, count=6)]   # different sizes in one batch
    batch = clf.classify_batch(frames, top_k=3)
    assert len(batch) == len(frames)
    for frame, got in zip(frames, batch):
        one = clf.classify(frame, top_k=3)
        assert [p.label_id for p in got] == [p.label_id for p in one]
        np.testing.assert_allclose([p.probability for p in got], [p.probability for p in one], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="at least one"):
        clf.classify_batch([])
    with pytest.raises(ValueError, match="frame 1: expected"):
        clf.classify_batch([frames[0], frames[1][:, :, :2], frames[2]])


@pytest.mark.parametrize("bad, needle", [
    (None, "HxWx3 uint8 numpy array"),
    ([[1, 2, 3]], "HxWx3 uint8 numpy array"),
    (np.zeros((48, 64, 3), np.float32), "uint8"),
    (np.zeros((48, 64), np.uint8), "HxWx3"),
    (np.zeros((48, 64, 4), np.uint8), "HxWx3"),
    (np.zeros((0, 64, 3), np.uint8), "non-empty"),
    (np.zeros((48, 64, 3, 1), np.uint8), "HxWx3"),
])
def test_bad_frame_raises_value_error_and_the_classifier_stays_usable(clf, photos_dir, bad, needle):
    _, frame = next(photo_frames(photos_dir, count=1))
    before = clf.classify(frame)
    with pytest.raises(ValueError, match=needle):
        clf.classify(bad)
    assert clf.classify(frame) == before


def test_classify_file_reads_an_exif_rotated_photo_as_cv2_imread_does(clf, photos_dir, tmp_path):
    """One rule for image files on every path: the EXIF orientation is applied (docs: README, preprocessing)."""
    import cv2
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 8                                        # stored rotated a quarter turn the other way
    path = str(tmp_path / "sideways.jpg")
    with Image.open(os.path.join(photos_dir, "n01443537_goldfish.JPEG")) as img:
        img.convert("RGB").save(path, exif=exif.tobytes(), quality=95)
    from_file = clf.classify_file(path, top_k=5)
    with Classifier.load(clf.path, frame_path="exact") as exact:     # the frame path bit-exact with files'
        from_frame = exact.classify(cv2.imread(path, cv2.IMREAD_COLOR), top_k=5)
    assert [p.label_id for p in from_file] == [p.label_id for p in from_frame]
    assert from_file[0].probability == pytest.approx(from_frame[0].probability, abs=1e-6)
    with pytest.raises(UserError, match="unreadable image"):
        clf.classify_file(os.path.join(photos_dir, "..", "README.md"))


def test_bad_top_k_is_a_value_error(clf, photos_dir):
    _, frame = next(photo_frames(photos_dir, count=1))
    for k in (0, -1, 2.5):
        with pytest.raises(ValueError, match="top_k"):
            clf.classify(frame, top_k=k)


def test_each_thread_gets_its_own_backend_and_the_same_answers(onnx_path, photos_dir):
    frames = [f for _, f in photo_frames(photos_dir, count=8)]
    with Classifier.load(onnx_path, threads=1) as c:
        expected = [c.classify(f) for f in frames]
        results, backends, errors = {}, {}, []

        def work(tid):
            try:
                results[tid] = [c.classify(f) for f in frames for _ in range(2)][::2]
                backends[tid] = c.backend
            except Exception as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len({id(b) for b in backends.values()} | {id(c.backend)}) == 4   # one per thread
        for got in results.values():
            for g, e in zip(got, expected):
                assert [p.label_id for p in g] == [p.label_id for p in e]
                np.testing.assert_allclose([p.probability for p in g], [p.probability for p in e], rtol=1e-4)
        all_backends = list(backends.values())
    assert all(not b.active for b in all_backends)            # close() freed every thread's backend
    with pytest.raises(RuntimeError, match="closed"):
        c.classify(frames[0])


# -- manifests ---------------------------------------------------------------------------------
def _copy_model(onnx_path, folder):
    dst = os.path.join(str(folder), "model.onnx")
    shutil.copy(onnx_path, dst)
    shutil.copy(mf.sidecar(onnx_path), mf.sidecar(dst))
    return dst


def test_missing_manifest_is_a_clear_error(onnx_path, tmp_path):
    dst = os.path.join(str(tmp_path), "model.onnx")
    shutil.copy(onnx_path, dst)
    with pytest.raises(UserError, match="no manifest beside"):
        Classifier.load(dst)


def test_manifest_of_another_model_is_a_clear_error(onnx_path, tmp_path):
    dst = _copy_model(onnx_path, tmp_path)
    m = mf.read(dst)
    m.preprocessing = dict(m.preprocessing, input_size=[64, 64])
    mf.write(m, dst)
    with pytest.raises(UserError, match="does not belong to this model"):
        Classifier.load(dst)
    m.preprocessing = mf.read(onnx_path).preprocessing
    m.model.label_names = m.model.label_names[:100]
    m.model.num_classes = 100
    mf.write(m, dst)
    with pytest.raises(UserError, match="outputs 200 classes but its manifest lists 100"):
        Classifier.load(dst)


def test_changed_model_file_is_a_clear_error(onnx_path, tmp_path):
    dst = _copy_model(onnx_path, tmp_path)
    with open(dst, "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="does not match its manifest"):
        Classifier.load(dst)


def test_manifest_of_another_kind_is_refused(onnx_path, tmp_path):
    dst = _copy_model(onnx_path, tmp_path)
    engine = os.path.join(str(tmp_path), "model.engine")
    os.replace(dst, engine)
    os.replace(mf.sidecar(dst), mf.sidecar(engine))
    with pytest.raises(UserError, match="describes a 'onnx' artifact, expected 'engine'"):
        Classifier.load(engine)


def test_unknown_file_type_is_refused(tmp_path):
    path = os.path.join(str(tmp_path), "model.bin")
    open(path, "wb").close()
    with pytest.raises(UserError, match="neither an engine"):
        Classifier.load(path)


def test_engine_without_tensorrt_gpu_names_the_onnx_alternative_never_switches(onnx_path, tmp_path):
    """This host has no TensorRT GPU runtime: loading an engine must fail, pointing at the ONNX file."""
    dst = _copy_model(onnx_path, tmp_path)
    engine = os.path.join(str(tmp_path), "model.engine")
    with open(engine, "wb") as f:
        f.write(b"plan bytes")
    m = mf.derive(mf.read(dst), dst, "engine", {"summary": "test engine"})
    mf.write(m, engine)
    with pytest.raises(Unsupported) as e:
        Classifier.load(engine)
    assert "model.onnx" in str(e.value) and "ONNX Runtime" in str(e.value)


# -- the frame path against the PIL path, on all 5,000 shared val images ---------------------------
CAMERA_SIZE = (256, 192)   # (w, h): each val image enlarged to a 4:3 camera-sized frame


def test_frame_path_top1_agrees_with_pil_path_on_the_val_images(clf, val_dir):
    """Top-1 of the OpenCV-frame path vs timm's PIL path, every shared val image, two ways:

    - native: the 64x64 image as a BGR frame (for a 56x56 model no resize happens: both paths crop);
    - camera: the image enlarged to a 256x192 frame first (OpenCV, bilinear), so both paths shrink it
      with their own resampling code, as they do on real camera frames.
    Figures are printed (pytest -s) and reported in docs/runtime.md.
    """
    import cv2
    from PIL import Image

    from inception_deploy.pipeline.datasets import open_image_folder
    from inception_deploy.pipeline.preprocess import stack

    pre = clf.preprocessing
    ds = open_image_folder(val_dir, clf.labels)
    agree = {"native": 0, "camera": 0}
    labels_match = {"pil": 0, "frame": 0}
    n = 0
    chunk = {k: [] for k in ("pil", "frame", "cam_pil", "cam_frame", "label")}

    def flush():
        nonlocal n
        tops = {k: clf.logits(stack(chunk[k])).argmax(1) for k in ("pil", "frame", "cam_pil", "cam_frame")}
        agree["native"] += int((tops["pil"] == tops["frame"]).sum())
        agree["camera"] += int((tops["cam_pil"] == tops["cam_frame"]).sum())
        labels = np.asarray(chunk["label"])
        labels_match["pil"] += int((tops["pil"] == labels).sum())
        labels_match["frame"] += int((tops["cam_frame"] == labels).sum())
        n += len(labels)
        for v in chunk.values():
            v.clear()

    for sample in ds.samples:
        img = ds.load(sample)
        rgb = np.asarray(img.convert("RGB"))
        camera = cv2.resize(rgb, CAMERA_SIZE, interpolation=cv2.INTER_LINEAR)
        chunk["pil"].append(pre.image(img))
        chunk["frame"].append(pre.frame(np.ascontiguousarray(rgb[:, :, ::-1])))
        chunk["cam_pil"].append(pre.image(Image.fromarray(camera)))
        chunk["cam_frame"].append(pre.frame(np.ascontiguousarray(camera[:, :, ::-1])))
        chunk["label"].append(sample.label)
        if len(chunk["label"]) == 500:
            flush()
    if chunk["label"]:
        flush()
    assert n == 5000 and not ds.skipped
    rates = {k: v / n for k, v in agree.items()}
    print("\nframe-vs-PIL top-1 agreement on %d val images: native %.2f %%, camera-sized %.2f %%; top-1 accuracy "
          "PIL %.2f %%, camera frames %.2f %%" % (n, 100 * rates["native"], 100 * rates["camera"],
                                                100 * labels_match["pil"] / n, 100 * labels_match["frame"] / n))
    assert rates["native"] >= 0.99 and rates["camera"] >= 0.99, rates
