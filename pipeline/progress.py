"""A dependency-free progress line for long work (stderr; one final line when not a terminal)."""
import sys
import time
from typing import Optional


class Progress:
    def __init__(self, total: int, label: str, unit: str = "it", stream=None) -> None:  # type: ignore[no-untyped-def]
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._next_pct = 25

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty and now - self._last > 0.2:
            self._last = now
            self._draw("\r", "")
        elif not self.tty and self.total and self.done * 100 >= self._next_pct * self.total and self.done < self.total:
            self._next_pct += 25
            self._draw("", "\n")

    def _draw(self, head: str, tail: str, note: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = "%s: %d/%d %s (%.0f%%) %.1f s, %.1f %s/s%s" % (
            self.label, self.done, self.total, self.unit, pct, elapsed, rate, self.unit,
            (", " + note) if note else "")
        self.stream.write(head + text + tail)
        self.stream.flush()

    def close(self, note: Optional[str] = "") -> float:
        self._draw("\r" if self.tty else "", "\n", note or "")
        return time.perf_counter() - self.start
