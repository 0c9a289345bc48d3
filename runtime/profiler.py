"""Per-stage times and frame rate of a camera loop, like jetson-inference's ``net.PrintProfilerTimes()``.

    prof = Profiler()
    with prof.stage("preprocess"):
        x = clf.preprocess(frame)
    ...
    prof.frame_done()
    print(prof.line())      # capture 0.4 ms  preprocess 1.9 ms  inference 1.3 ms  post 0.1 ms  |  38.2 fps

Means are over the last ``window`` frames; FPS is frames per second of wall time over the same
window (what a viewer sees, including waits for the camera). Device-side, Python 3.8.
"""
import collections
import contextlib
import time
from typing import Any, Deque, Dict, Iterator, List

STAGES = ("capture", "preprocess", "inference", "post")


class Profiler:
    def __init__(self, window: int = 30) -> None:
        self.window = window
        self.times: Dict[str, Deque[float]] = collections.OrderedDict(
            (name, collections.deque(maxlen=window)) for name in STAGES)
        self._stamps: Deque[float] = collections.deque(maxlen=window + 1)
        self.frames = 0

    def add(self, stage: str, ms: float) -> None:
        self.times.setdefault(stage, collections.deque(maxlen=self.window)).append(float(ms))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - t0) * 1e3)

    def frame_done(self) -> None:
        self.frames += 1
        self._stamps.append(time.perf_counter())

    @property
    def fps(self) -> float:
        if len(self._stamps) < 2:
            return 0.0
        return (len(self._stamps) - 1) / max(self._stamps[-1] - self._stamps[0], 1e-9)

    def means(self) -> Dict[str, float]:
        return {name: sum(v) / len(v) for name, v in self.times.items() if v}

    def line(self) -> str:
        parts: List[str] = ["%s %.1f ms" % (name, ms) for name, ms in self.means().items()]
        return "%s  |  %.1f fps" % ("  ".join(parts), self.fps)

    def to_dict(self) -> Dict[str, Any]:
        return {"fps": round(self.fps, 2), "ms": {k: round(v, 3) for k, v in self.means().items()},
                "frames": self.frames}
