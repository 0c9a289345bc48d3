"""Progress is drawn in one place (pipeline/progress.StatusLine): item counts, the TensorRT build
monitor and calibration's part timer write through it. A log file gets whole, flushed lines and no
carriage returns; a terminal gets one line redrawn in place."""
import io
import re
import time

import pytest

from inception_deploy.pipeline.progress import ERASE, REDRAW_S, Progress, StatusLine


class Log(io.StringIO):
    """A log file: not a terminal; remembers what had been flushed."""

    tty = False

    def __init__(self) -> None:
        super().__init__()
        self.flushed = ""

    def isatty(self) -> bool:
        return self.tty

    def flush(self) -> None:
        self.flushed = self.getvalue()


class Terminal(Log):
    tty = True


@pytest.fixture
def clock(monkeypatch):
    """time.perf_counter under the test's control (seconds)."""
    now = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    return now


def test_status_line_in_a_log_writes_whole_flushed_lines_only(clock):
    log = Log()
    status = StatusLine("hash", log)
    status.redraw("1/3")
    assert log.getvalue() == ""                       # a log keeps no passing states
    status.line("3/3 files")
    status.clear()
    assert log.getvalue() == log.flushed == "hash: 3/3 files\n"


def test_status_line_on_a_terminal_redraws_in_place_at_most_every_redraw_s(clock):
    term = Terminal()
    status = StatusLine("hash", term)
    status.line("starting")                           # nothing redrawn yet: a plain line
    status.redraw("1/3")
    clock[0] += REDRAW_S / 2
    status.redraw("2/3")                              # too soon: skipped
    status.redraw("2/3", label="hash 1 s", force=True)
    clock[0] += REDRAW_S
    status.redraw("3/3")
    status.line("done")                               # replaces the redrawn line
    status.redraw("again", force=True)
    status.clear()
    status.clear()                                    # nothing showing: nothing written
    assert term.getvalue() == term.flushed == (
        "hash: starting\n" + ERASE + "hash: 1/3" + ERASE + "hash 1 s: 2/3" + ERASE + "hash: 3/3" +
        ERASE + "hash: done\n" + ERASE + "hash: again" + ERASE)


def _count(bar: Progress, items: int, seconds_each: float, clock) -> Progress:
    for _ in range(items):
        clock[0] += seconds_each
        bar.update()
    return bar


def test_progress_in_a_log_writes_each_quarter_and_a_last_line(clock):
    log = Log()
    bar = _count(Progress(8, "images", unit="img", stream=log), 8, 0.5, clock)
    assert bar.close("3 unreadable") == pytest.approx(4.0)
    lines = log.getvalue().splitlines()
    assert lines == ["images: 2/8 img (25%) 1.0 s, 2.0 img/s", "images: 4/8 img (50%) 2.0 s, 2.0 img/s",
                     "images: 6/8 img (75%) 3.0 s, 2.0 img/s", "images: 8/8 img (100%) 4.0 s, 2.0 img/s, 3 unreadable"]
    assert "\r" not in log.getvalue()


def test_progress_on_a_terminal_is_one_line_redrawn(clock):
    term = Terminal()
    _count(Progress(3, "hash", unit="file", stream=term), 3, 1.0, clock).close()
    out = term.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out.split(ERASE)[1:] == ["hash: 1/3 file (33%) 1.0 s, 1.0 file/s", "hash: 2/3 file (67%) 2.0 s, 1.0 file/s",
                                    "hash: 3/3 file (100%) 3.0 s, 1.0 file/s", "hash: 3/3 file (100%) 3.0 s, 1.0 file/s\n"]


def _drive_build_monitor(stream, clock):
    """A build as TensorRT-RTX reports it: a top phase, nested phases, steps; the real IProgressMonitor."""
    import tensorrt_rtx

    from inception_deploy.engines import trt_api, trt_hooks

    monitor = trt_hooks.make_progress_monitor(trt_api.from_module(tensorrt_rtx), stream=stream)
    assert isinstance(monitor, tensorrt_rtx.IProgressMonitor)
    monitor.phase_start("Building engine", None, 2)
    for step in range(2):
        clock[0] += 0.6
        monitor.phase_start("Tactics %d" % step, "Building engine", 2)
        monitor.phase_start("Layer %d" % step, "Tactics %d" % step, 0)
        for k in range(2):
            clock[0] += 0.3
            assert monitor.step_complete("Tactics %d" % step, k) is True      # never cancels
        monitor.phase_finish("Layer %d" % step)
        monitor.phase_finish("Tactics %d" % step)
        monitor.step_complete("Building engine", step)
    monitor.phase_finish("Building engine")
    return stream.getvalue()


def test_build_monitor_logs_the_top_two_phase_levels(clock):
    assert _drive_build_monitor(Log(), clock) == (
        "build: Building engine (0.0 s)\nbuild:   Tactics 0 (0.6 s)\nbuild:   Tactics 1 (1.8 s)\n")


def test_build_monitor_on_a_terminal_draws_the_phase_path_and_erases_it(clock):
    out = _drive_build_monitor(Terminal(), clock)
    states = out.split(ERASE)
    assert states[0] == "" and states[-1] == "" and "\n" not in out          # ends erased, leaves no line
    assert "build 1 s: Building engine 0/2 > Tactics 0 1/2 > Layer 0" in states
    assert "build 2 s: Building engine 1/2 > Tactics 1 2/2 > Layer 1" in states
    assert all(re.match(r"build \d+ s: Building engine \d/2", s) for s in states[1:-1])


def test_calibration_timer_prints_each_part(clock, capsys):
    from inception_deploy.calibration.stage import Timer

    timer = Timer()
    clock[0] += 1.26
    assert timer.done("statistics", "500 images") == pytest.approx(1.26)
    clock[0] += 2.0
    timer.done("ranges")
    clock[0] += 0.5
    timer.done("ranges")
    assert timer.parts == {"statistics": 1.26, "ranges": 2.5} and timer.total() == pytest.approx(3.76)
    assert capsys.readouterr().err == ("calibrate: statistics: 1.3 s (500 images)\ncalibrate: ranges: 2.0 s\n"
                                       "calibrate: ranges: 0.5 s\n")
