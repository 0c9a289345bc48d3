"""Capture in its own thread, handing the consumer the newest frame: never a growing queue.

A camera delivers frames whether or not the app keeps up; reading them in the classification
loop makes every frame wait behind the last inference, and OpenCV's own buffer (or a queue) turns
a slow model into seconds of latency. :class:`Capture` reads the source in a thread and keeps one
slot: for a live source (camera, RTSP) a new frame replaces an unread one (counted as dropped),
so :meth:`Capture.get` always returns the newest frame; for a file or image folder the reader
waits for the slot to be taken, so every frame is classified in order. Device-side, Python 3.8.
"""
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass
class Frame:
    """A captured frame: BGR pixels, its number in the source, when it was read and how long that took."""

    image: np.ndarray
    index: int
    captured_at: float        # time.perf_counter() after the read
    capture_ms: float         # the source's read (grab + decode) time


class Capture:
    """``with Capture(source) as cap: frame = cap.get()`` (None at the end of the source).

    ``newest_only``: default ``source.spec.live``. Counters: ``captured``, ``delivered``, ``dropped``.
    An exception in the reader thread is raised again by :meth:`get`.
    """

    def __init__(self, source: Any, newest_only: Optional[bool] = None) -> None:
        self.source = source
        spec = getattr(source, "spec", None)
        self.newest_only = bool(getattr(spec, "live", True)) if newest_only is None else newest_only
        self.captured = self.delivered = self.dropped = 0
        self._slot: Optional[Frame] = None
        self._done = False
        self._stop = False
        self._error: Optional[BaseException] = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> "Capture":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop:
                t0 = time.perf_counter()
                image = self.source.read()
                t1 = time.perf_counter()
                if image is None:
                    break
                self._put(Frame(image, self.captured, t1, (t1 - t0) * 1e3))
        except BaseException as e:   # handed to the consumer, which raises it in its own thread
            self._error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _put(self, frame: Frame) -> None:
        with self._cond:
            while self._slot is not None and not self.newest_only and not self._stop:
                self._cond.wait(0.1)
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.captured += 1
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not yet returned; waits for one. None at the end (or after ``timeout`` s)."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self._cond:
            while self._slot is None and not self._done:
                left = None if deadline is None else deadline - time.perf_counter()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
        if frame is None and self._error is not None:
            raise self._error
        if frame is not None:
            self.delivered += 1
        return frame

    def stop(self) -> None:
        """Stop the reader thread (it ends after its current read) and close the source."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.source.close()

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
