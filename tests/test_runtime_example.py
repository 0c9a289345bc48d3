"""examples/camera_classify.py runs headless on a short video made from the shared photos.

The video is generated into a temporary folder for the test (never committed), decoded by the
example through OpenCV exactly as a camera/file source would be, and the printed top-5 are checked
against the Classifier on the same decoded frames.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths

EXAMPLE = os.path.join(paths.REPO_ROOT, "examples", "camera_classify.py")
PHOTOS_IN_VIDEO = 10
FRAMES_PER_PHOTO = 2
SIZE = (320, 240)
NO_TORCH = (
    "import importlib.abc, runpy, sys\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'timm', 'modelopt', 'torchvision'):\n"
    "            raise ImportError('the camera example imported ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")


@pytest.fixture(scope="module")
def video(tmp_path_factory, photos_dir) -> str:
    """A 20-frame 320x240 MJPEG clip: 10 shared photos (greyscale ones included), 2 frames each."""
    import cv2

    names = sorted(os.listdir(photos_dir))
    picks = names[:: len(names) // PHOTOS_IN_VIDEO][:PHOTOS_IN_VIDEO]
    grey = [n for n in names if n.startswith("n02815834")]       # beaker: a greyscale JPEG
    picks = picks[:-1] + grey
    path = str(tmp_path_factory.mktemp("video") / "photos.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    assert writer.isOpened(), "this OpenCV cannot write MJPEG .avi"
    for name in picks:
        frame = cv2.resize(cv2.imread(os.path.join(photos_dir, name), cv2.IMREAD_COLOR), SIZE,
                           interpolation=cv2.INTER_AREA)
        for _ in range(FRAMES_PER_PHOTO):
            writer.write(frame)
    writer.release()
    return path


def run_example(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """The example in a fresh interpreter that refuses to import torch/timm/modelopt."""
    return subprocess.run([sys.executable, "-c", NO_TORCH, EXAMPLE, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=paths.REPO_ROOT, env=dict(os.environ, DISPLAY=""))


def decoded_frames(path: str):
    import cv2

    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_example_runs_headless_on_the_video_and_prints_the_classifier_top5(video, test_model_onnx):
    from inception_deploy.runtime import Classifier

    res = run_example(test_model_onnx, "--source", video, "--headless", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    frames = decoded_frames(video)
    assert len(lines) == len(frames) == PHOTOS_IN_VIDEO * FRAMES_PER_PHOTO
    with Classifier.load(test_model_onnx) as clf:
        for line, frame in zip(lines, frames):
            expect = clf.classify(frame, top_k=5)
            assert [t["label_id"] for t in line["top"]] == [p.label_id for p in expect]
            assert [t["name"] for t in line["top"]] == [p.label_name for p in expect]
            np.testing.assert_allclose([t["probability"] for t in line["top"]], [p.probability for p in expect],
                                       atol=2e-6)
    assert lines[-1]["fps"] > 0 and all(line["ms"] > 0 for line in lines)


def test_example_human_output_and_max_frames(video, test_model_onnx):
    res = run_example(test_model_onnx, "--source", video, "--headless", "--max-frames", "5", "--top-k", "3")
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout.splitlines()
    assert "onnxruntime-cpu" in out[0] and "headless" in out[0]
    frame_lines = [line for line in out if line.startswith("frame ")]
    assert len(frame_lines) == 5 and all("fps" in line and line.count("%") == 3 for line in frame_lines)
    assert out[-1].startswith("5 frames")


def test_example_without_display_falls_back_to_printing(video, test_model_onnx):
    res = run_example(test_model_onnx, "--source", video, "--max-frames", "2")     # no --headless, no DISPLAY
    assert res.returncode == 0, res.stderr[-2000:]
    assert "headless" in res.stdout.splitlines()[0]


def test_example_unusable_sources_exit_2_with_a_sentence(test_model_onnx, tmp_path):
    res = run_example(test_model_onnx, "--source", str(tmp_path / "missing.mp4"), "--headless")
    assert res.returncode == 2 and "source not found" in res.stderr
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    res = run_example(test_model_onnx, "--source", str(empty), "--headless")
    assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr


def test_example_gstreamer_pipeline_without_gstreamer_is_unsupported(test_model_onnx):
    import cv2

    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer: the unsupported message cannot be shown here")
    res = run_example(test_model_onnx, "--source", "videotestsrc num-buffers=5 ! videoconvert ! appsink", "--headless")
    assert res.returncode == 3 and "no GStreamer support" in res.stderr


def test_example_engine_without_tensorrt_exits_3_naming_the_onnx(test_model_onnx, tmp_path):
    engine = str(tmp_path / "model.engine")
    with open(engine, "wb") as f:
        f.write(b"plan")
    mf.write(mf.derive(mf.read(test_model_onnx), test_model_onnx, "engine", {"summary": "test"}), engine)
    res = run_example(engine, "--source", "0", "--headless")
    assert res.returncode == 3, res.stderr
    assert "model.onnx" in res.stderr and "Traceback" not in res.stderr


def test_example_is_python_3_8_and_device_side():
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    res = subprocess.run([vermin, "--no-tips", "--violations", "-t=3.8-", "--eval-annotations", "--backport", "typing",
                          EXAMPLE], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("option, value, needle", [
    ("--top-k", "0", "--top-k must be a positive number of classes, got 0"),
    ("--max-frames", "-1", "--max-frames must be 0 (until the source ends) or a positive number of frames, got -1"),
    ("--threshold", "1.5", "--threshold is a probability between 0 and 1"),
    ("--smoothing", "0", "--smoothing is the weight of the newest frame"),
])
def test_out_of_range_options_are_one_error_line_each(option, value, needle, video, test_model_onnx):
    """Issue 18: --top-k 0 gave a traceback, --max-frames -1 "the source delivered no frames"."""
    res = run_example(test_model_onnx, "--source", video, "--headless", option, value)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == ["error: " + needle] or (
        len(res.stderr.splitlines()) == 1 and res.stderr.startswith("error: " + needle)), res.stderr


def test_print_pipeline_needs_no_model_and_no_camera():
    res = run_example("not-built-yet.engine", "--source", "csi://0", "--width", "1920", "--height", "1080",
                      "--print-pipeline")
    assert res.returncode == 0, res.stderr
    assert "nvarguscamerasrc sensor-id=0" in res.stdout and "width=1920,height=1080" in res.stdout
    assert "gst-launch-1.0 -v nvarguscamerasrc" in res.stdout
