"""Progress for long work, drawn in one place: :class:`StatusLine` writes ``label: text`` lines,
:class:`Progress` counts items with it (the image and file loops), and the TensorRT build monitor
(:mod:`engines.trt_hooks`) and calibration's part timer draw through it too.

On a terminal a status line is redrawn in place, at most every :data:`REDRAW_S`; in a log file or
a pipe (CI) only whole lines are written, so a log holds no carriage returns. Every write is
flushed: stderr to a file is block-buffered, and a log that lags the work misleads. Device-side:
stdlib only, Python 3.8.
"""
import sys
import time
from typing import Any, Optional

REDRAW_S = 0.2          # a terminal line is redrawn at most this often (seconds), unless forced
ERASE = "\r\033[K"      # back to the line's start and erase it (VT100; every terminal emulator)


class StatusLine:
    """``label: text`` on ``stream`` (stderr by default), redrawn in place on a terminal.

    :meth:`redraw` shows a passing state (terminal only); :meth:`line` writes a line that stays
    (it replaces a redrawn one); :meth:`clear` removes a redrawn line that no line followed.
    """

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and bool(self.stream.isatty())
        self._open = False          # a redrawn line is on the terminal, without its newline
        self._last = 0.0

    def redraw(self, text: str, label: Optional[str] = None, force: bool = False) -> None:
        """On a terminal, show ``label: text`` in place of the last redraw (skipped when the last
        one is under :data:`REDRAW_S` old, unless ``force``); elsewhere nothing."""
        if not self.tty:
            return
        now = time.perf_counter()
        if not force and now - self._last < REDRAW_S:
            return
        self._last = now
        self._write(ERASE + self._format(text, label))
        self._open = True

    def line(self, text: str, label: Optional[str] = None) -> None:
        """Write ``label: text`` and a newline, over a redrawn line if one is showing."""
        self._write((ERASE if self._open else "") + self._format(text, label) + "\n")
        self._open = False

    def clear(self) -> None:
        """Erase a redrawn line that is still showing (the work ended without a last line)."""
        if self._open:
            self._write(ERASE)
            self._open = False

    def _format(self, text: str, label: Optional[str]) -> str:
        return "%s: %s" % (self.label if label is None else label, text)

    def _write(self, s: str) -> None:
        self.stream.write(s)
        self.stream.flush()


class Progress:
    """``label: done/total unit (pct%) elapsed, rate``: redrawn on a terminal, a line at each
    quarter in a log, and one final line from :meth:`close`."""

    def __init__(self, total: int, label: str, unit: str = "it", stream: Any = None) -> None:
        self.total = max(int(total), 0)
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self.status = StatusLine(label, stream)
        self._next_pct = 25

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.status.tty:
            self.status.redraw(self._text())
        elif self.total and self.done * 100 >= self._next_pct * self.total and self.done < self.total:
            self._next_pct += 25
            self.status.line(self._text())

    def _text(self, note: str = "") -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return "%d/%d %s (%.0f%%) %.1f s, %.1f %s/s%s" % (
            self.done, self.total, self.unit, pct, elapsed, rate, self.unit, (", " + note) if note else "")

    def close(self, note: Optional[str] = "") -> float:
        self.status.line(self._text(note or ""))
        return time.perf_counter() - self.start
