"""Sources by URI, generated GStreamer pipelines, the newest-frame capture thread, the profiler and
the probability smoothing (runtime.sources / capture / profiler / smoothing / options).

Cameras, CSI sensors and RTSP servers are not on the development machines: their pipelines are
checked as strings (and with gst-launch's own parser where GStreamer is installed); files, image
folders and the capture policy run for real.
"""
import os
import shlex
import shutil
import threading
import time

import numpy as np
import pytest

from inception_deploy.pipeline.errors import UserError
from inception_deploy.runtime.capture import Capture
from inception_deploy.runtime.profiler import Profiler
from inception_deploy.runtime.smoothing import ProbabilityEMA
from inception_deploy.runtime.sources import (SourceOptions, SourceSpec, describe_pipeline, gstreamer_pipeline, open_source,
                             parse_source)

JETSON = SourceOptions(width=1920, height=1080, fps=30, jetson=True)
DESKTOP = SourceOptions(jetson=False)


@pytest.mark.parametrize("uri, kind, location, live", [
    ("csi://0", "csi", "0", True),
    ("v4l2:///dev/video1", "v4l2", "/dev/video1", True),
    ("rtsp://10.0.0.2:8554/cam", "rtsp", "rtsp://10.0.0.2:8554/cam", True),
    ("2", "index", "2", True),
    ("videotestsrc ! videoconvert ! appsink", "gstreamer", "videotestsrc ! videoconvert ! appsink", True),
])
def test_uris_are_parsed_into_kinds(uri, kind, location, live):
    assert parse_source(uri) == SourceSpec(uri, kind, location, live)


def test_paths_are_files_folders_or_images(tmp_path, photos_dir):
    photo = os.path.join(photos_dir, sorted(os.listdir(photos_dir))[0])
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    assert parse_source(str(clip)).kind == "file" and not parse_source(str(clip)).live
    assert parse_source("file://" + str(clip)) == SourceSpec("file://" + str(clip), "file", str(clip), False)
    assert parse_source(photos_dir).kind == "folder" and parse_source(photo).kind == "image"


@pytest.mark.parametrize("bad, needle", [
    ("", "empty --source"), ("csi://front", "sensor number"), ("v4l2://video0", "device path"),
    ("http://x/y.mjpg", "unknown source scheme http://"), ("/no/such/clip.mp4", "source not found"),
])
def test_bad_sources_are_one_sentence(bad, needle):
    with pytest.raises(UserError, match=needle):
        parse_source(bad)


def test_generated_pipelines_per_kind():
    csi = gstreamer_pipeline(parse_source("csi://1"), JETSON)
    assert csi.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,"
                          "framerate=30/1,format=NV12 ! nvvidconv flip-method=0 ! video/x-raw,format=BGRx")
    v4l2 = gstreamer_pipeline(parse_source("v4l2:///dev/video0"), DESKTOP)
    assert v4l2.startswith('v4l2src device="/dev/video0" ! video/x-raw,width=1280,height=720')
    rtsp = parse_source("rtsp://cam/live")
    on_jetson, on_desktop = gstreamer_pipeline(rtsp, JETSON), gstreamer_pipeline(rtsp, DESKTOP)
    assert 'rtspsrc location="rtsp://cam/live" latency=200 drop-on-latency=true ! rtph264depay ! h264parse' in on_jetson
    assert "nvv4l2decoder" in on_jetson and "avdec_h264" in on_desktop and "nvv4l2decoder" not in on_desktop
    h265 = gstreamer_pipeline(rtsp, SourceOptions(codec="h265", latency_ms=50, jetson=False))
    assert "rtph265depay ! h265parse ! avdec_h265" in h265 and "latency=50" in h265
    for pipeline in (csi, v4l2, on_jetson, on_desktop, h265):   # the newest frame only, never a queue
        assert pipeline.endswith("video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")
    assert gstreamer_pipeline(parse_source("0"), DESKTOP) is None


def test_user_text_is_quoted_for_gstreamer_and_for_the_shell():
    """A URL with spaces, &, quotes and backslashes stays one property value and one shell word."""
    uri = 'rtsp://user:p&ss@10.0.0.2/live "cam"\\1'
    spec = parse_source(uri)
    pipeline = gstreamer_pipeline(spec, DESKTOP)
    assert 'location="rtsp://user:p&ss@10.0.0.2/live \\"cam\\"\\\\1"' in pipeline
    text = describe_pipeline(spec, DESKTOP)
    launch = text.splitlines()[-1].strip()
    words = shlex.split(launch)
    assert words[:3] == ["gst-launch-1.0", "-v", "rtspsrc"]
    assert words[3] == 'location="rtsp://user:p&ss@10.0.0.2/live \\"cam\\"\\\\1"'
    assert words[-2:] == ["fakesink", "sync=false"]                     # appsink replaced for gst-launch
    assert describe_pipeline(parse_source("0"), DESKTOP).endswith("opened by OpenCV directly, no GStreamer pipeline")


# -- files and folders, read for real ---------------------------------------------------------------
def test_image_folder_source_reads_sorted_images_skips_bad_ones_and_loops(tmp_path, photos_dir):
    names = sorted(os.listdir(photos_dir))[:3]
    for name in names:
        shutil.copy(os.path.join(photos_dir, name), tmp_path / name)
    (tmp_path / "b_broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("skip me")
    with open_source(parse_source(str(tmp_path))) as src:
        frames = [src.read() for _ in range(4)]
        assert all(f is not None and f.dtype == np.uint8 and f.shape[2] == 3 for f in frames[:3])
        assert frames[3] is None and [os.path.basename(p) for p in src.skipped] == ["b_broken.jpg"]
    with open_source(parse_source(str(tmp_path)), SourceOptions(loop=True)) as src:
        assert all(src.read() is not None for _ in range(7))          # around more than twice
    with pytest.raises(UserError, match="no images"):
        empty = tmp_path / "empty"
        empty.mkdir()
        open_source(parse_source(str(empty)))


def test_video_file_source_and_gstreamer_without_gstreamer(tmp_path):
    import cv2

    from inception_deploy.pipeline.errors import Unsupported

    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 40, dtype=np.uint8))
    writer.release()
    with open_source(parse_source(path)) as src:
        frames = [src.read() for _ in range(6)]
    assert [f is None for f in frames] == [False] * 5 + [True] and frames[0].shape == (48, 64, 3)
    if "GStreamer:                   NO" in cv2.getBuildInformation():
        with pytest.raises(Unsupported, match="no GStreamer support"):
            open_source(parse_source("csi://0"))


# -- the capture thread ---------------------------------------------------------------------------------
class CountingSource:
    """Frames numbered 0, 1, 2, ... as fast as a camera at ``fps``, ``count`` of them."""

    def __init__(self, count, fps=1000.0, live=True):
        self.spec = SourceSpec("test://", "index", "0", live)
        self.count, self.period, self.next = count, 1.0 / fps, 0
        self.closed = False
        self.read_now = -1                      # the frame the camera has delivered last

    def read(self):
        if self.next >= self.count:
            return None
        time.sleep(self.period)
        frame = np.full((2, 2, 3), self.next % 256, dtype=np.uint8)
        frame.flat[0] = self.next // 256
        self.read_now, self.next = self.next, self.next + 1
        return frame

    def close(self):
        self.closed = True


class GatedSource(CountingSource):
    """A camera whose frames arrive when the test lets them (one semaphore release per frame)."""

    def __init__(self, count):
        super().__init__(count, fps=1e6)
        self.gate = threading.Semaphore(0)

    def read(self):
        self.gate.acquire()
        return super().read()


def _wait_captured(cap, n):
    deadline = time.time() + 10
    while cap.captured < n and time.time() < deadline:
        time.sleep(0.001)
    assert cap.captured == n


def test_live_capture_hands_over_the_newest_frame_and_drops_the_rest():
    src = GatedSource(count=20)
    with Capture(src) as cap:
        for _ in range(10):                     # ten frames arrive while the model is busy
            src.gate.release()
        _wait_captured(cap, 10)
        assert cap.get(timeout=5).index == 9 and cap.dropped == 9      # the newest; nothing queued
        assert cap.get(timeout=0.05) is None                            # no new frame yet: wait, not repeat
        for _ in range(3):
            src.gate.release()
        _wait_captured(cap, 13)
        assert cap.get(timeout=5).index == 12 and cap.dropped == 11
        for _ in range(7):
            src.gate.release()
        src.gate.release()                      # the end of the stream
        _wait_captured(cap, 20)
        assert cap.get(timeout=5).index == 19 and cap.get(timeout=5) is None
        assert (cap.captured, cap.delivered, cap.dropped) == (20, 3, 17)


def _consume(cap, model_s):
    """Frame numbers a model taking ``model_s`` per frame gets, until the source ends."""
    got = []
    while True:
        frame = cap.get(timeout=5)
        if frame is None:
            return got
        got.append(frame.index)
        time.sleep(model_s)


def test_live_capture_under_a_slow_model_keeps_up_with_the_camera():
    """A 1 kHz camera and a 20 ms model: a few frames reach the model, in order, none twice."""
    src = CountingSource(count=400, fps=1000.0)
    with Capture(src) as cap:
        got = _consume(cap, 0.02)
        assert cap.captured == 400 and cap.captured == cap.delivered + cap.dropped and cap.dropped > 200
    assert got == sorted(got) and len(set(got)) == len(got) and len(got) <= 200
    assert src.closed


def test_file_capture_hands_over_every_frame_in_order():
    with Capture(CountingSource(count=50, fps=5000.0, live=False)) as cap:
        assert _consume(cap, 0.001) == list(range(50)) and cap.dropped == 0


def test_capture_errors_reach_the_consumer_and_stop_leaves_no_thread():
    class Broken(CountingSource):
        def read(self):
            if self.next == 3:
                raise OSError("camera unplugged")
            return super().read()

    with Capture(Broken(count=10, live=False)) as cap:
        assert [cap.get(timeout=5).index for _ in range(3)] == [0, 1, 2]
        with pytest.raises(OSError, match="unplugged"):
            cap.get(timeout=5)
    endless = Capture(CountingSource(count=10 ** 9, fps=2000.0)).start()
    endless.get(timeout=5)
    endless.stop()
    assert not endless._thread.is_alive() and not [t for t in threading.enumerate() if t.name == "capture"]


# -- profiler, smoothing ------------------------------------------------------------------------------------
def test_profiler_means_fps_and_line():
    prof = Profiler(window=5)
    for _ in range(8):
        prof.add("capture", 1.0)
        with prof.stage("inference"):
            time.sleep(0.002)
        prof.frame_done()
    means = prof.means()
    assert means["capture"] == 1.0 and 1.5 < means["inference"] < 50
    assert 10 < prof.fps < 600 and prof.frames == 8
    assert prof.line().startswith("capture 1.0 ms  inference") and prof.line().endswith("fps")
    assert set(prof.to_dict()) == {"fps", "ms", "frames"}


def test_ema_smoothing_steadies_and_follows():
    ema = ProbabilityEMA(0.25)
    a, b = np.array([0.9, 0.1]), np.array([0.1, 0.9])
    assert np.allclose(ema.update(a), a)
    out = [ema.update(b) for _ in range(8)]
    assert out[0][0] > 0.6                  # one frame of another class does not flip the result
    assert out[-1][1] > 0.8                 # a lasting change comes through
    assert np.allclose(ProbabilityEMA(1.0).update(b), b)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        ProbabilityEMA(0.0)
