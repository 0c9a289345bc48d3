"""The calibrate stage as a hostile user meets it: runs into one folder one at a time, a re-run killed
-9 after it made its cache leaves the previous INT8 model and cache together, unreadable images are
counted and said, and bad input is one line (exit 2), never a traceback or an internal error.

Real `inception-deploy calibrate` processes on the trained test model and the shared calib/ images
(32-64 images, no TensorRT check: a few seconds each)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import onnx
import pytest

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.hashing import file_sha256
from inception_deploy.pipeline.summary import summarize

FAST = ["--precision", "int8", "--batch-size", "16", "--no-trt-check"]
LOCK_NAME = ".inception-deploy.lock"        # pipeline.LOCK_NAME


def calibrate_cmd(onnx_path, calib_dir, *extra):
    return [sys.executable, "-m", "inception_deploy.pipeline", "calibrate", "--onnx", onnx_path, "--images", calib_dir, *FAST, *extra]


def run(cmd, **env):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=paths.REPO_ROOT, env=dict(os.environ, **env))


def one_error_line(res):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and lines and lines[-1].startswith("error: "), res.stderr[-3000:]
    assert not any("Traceback" in line or line.startswith("internal error") for line in lines), res.stderr[-3000:]
    return lines[-1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, test_model_onnx, calib_dir):
    """model.onnx plus a finished calibrate run (method max) beside it."""
    out = tmp_path_factory.mktemp("calibrate_trust")
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(os.path.join(os.path.dirname(test_model_onnx), name), str(out / name))
    res = run(calibrate_cmd(str(out / "model.onnx"), calib_dir, "--count", "32", "--method", "max"))
    assert res.returncode == 0, res.stderr[-3000:]
    return str(out)


def _wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def _staged_cache(folder, pid):
    for name in os.listdir(folder):
        if name.startswith(".publish-pid%d-" % pid) and os.path.exists(
                os.path.join(folder, name, "model.int8.calib.cache.json")):
            return name
    return None


def _lock_pid(folder):
    try:
        return json.load(open(os.path.join(folder, LOCK_NAME)))["pid"]
    except (OSError, ValueError):
        return None


def test_killed_rerun_leaves_the_set_and_a_second_run_waits_its_turn(folder, calib_dir):
    onnx_path = os.path.join(folder, "model.onnx")
    int8, cache = os.path.join(folder, "model.int8.onnx"), os.path.join(folder, "model.int8.calib.cache")
    before = {p: file_sha256(p) for p in (int8, cache, mf.sidecar(int8), mf.sidecar(cache))}

    # 1. a re-run (other method) killed -9 after its cache was made: the published set is untouched
    killed = subprocess.Popen(calibrate_cmd(onnx_path, calib_dir, "--count", "32", "--method", "entropy"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=paths.REPO_ROOT)
    _wait_for(lambda: _staged_cache(folder, killed.pid))
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert {p: file_sha256(p) for p in before} == before
    from inception_deploy.pipeline import lineage
    assert lineage.check(int8, expect_kind="onnx-int8").stage["method"] == "max"
    leftovers = [n for n in os.listdir(folder) if "-pid%d-" % killed.pid in n]
    assert leftovers and _lock_pid(folder) == killed.pid                 # its work, staging and stale lock
    assert "pid" not in summarize(folder) and "candidate" not in summarize(folder)

    # 2. the next run takes the stale lock over and cleans up; a third one meanwhile is refused in one line
    second = subprocess.Popen(calibrate_cmd(onnx_path, calib_dir, "--count", "64", "--method", "entropy",
                                            "--no-stats-cache"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=paths.REPO_ROOT)
    _wait_for(lambda: _lock_pid(folder) == second.pid)
    third = run(calibrate_cmd(onnx_path, calib_dir, "--count", "32", "--method", "mse"),
                INCEPTION_DEPLOY_LOCK_WAIT="0")
    line = one_error_line(third)
    assert "in use by another inception-deploy run (pid %d" % second.pid in line and LOCK_NAME in line
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert "took over the lock" in err and "removed" in err and "leftover" in err
    assert not [n for n in os.listdir(folder) if "-pid" in n or n == LOCK_NAME]
    m = lineage.check(int8, expect_kind="onnx-int8")
    assert m.stage["method"] == "entropy" == mf.read(cache, expect_kind="calibration").stage["method"]


def test_unreadable_calibration_images_are_said_and_not_counted(tmp_path, folder, calib_dir):
    images = tmp_path / "calib"
    images.mkdir()
    for name in sorted(os.listdir(calib_dir))[:2]:           # class folders of the shared calib/ split
        shutil.copytree(os.path.join(calib_dir, name), str(images / name))
    first = images / sorted(os.listdir(str(images)))[0]
    good = sorted(os.listdir(str(first)))
    (first / "truncated.JPEG").write_bytes((first / good[0]).read_bytes()[:300])
    (first / "text.JPEG").write_text("not an image")
    (first / "empty.JPEG").write_bytes(b"")
    total = sum(len(files) for _, _, files in os.walk(str(images)))
    out = tmp_path / "out"
    res = run(calibrate_cmd(os.path.join(folder, "model.onnx"), str(images), "--count", "1000", "--out", str(out),
                            "--method", "max"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "3 of the %d chosen calibration images are unreadable and left out" % total in res.stderr
    cal = mf.read(str(out / "model.int8.calib.cache"), expect_kind="calibration")
    assert cal.stage["images"] == len(cal.stage["files"]) == total - 3
    assert cal.stage["source"]["skipped"]["count"] == 3
    assert mf.read(str(out / "model.int8.onnx")).stage["images"] == total - 3


def test_onnx_that_does_not_decode_is_one_line_naming_the_file(tmp_path, folder, calib_dir):
    bad = tmp_path / "model.onnx"
    data = bytearray(open(os.path.join(folder, "model.onnx"), "rb").read())
    node = onnx.load(os.path.join(folder, "model.onnx")).graph.node[0].SerializeToString()
    data[bytes(data).index(node)] = 0xFF                       # the node list no longer decodes
    bad.write_bytes(bytes(data))
    mf.write(mf.read(os.path.join(folder, "model.onnx")), str(bad))   # ... with a matching sha256
    line = one_error_line(run(calibrate_cmd(str(bad), calib_dir, "--count", "32")))
    assert str(bad) in line and "does not decode as an ONNX model" in line and "DecodeError" in line, line


@pytest.mark.parametrize("args, message", [
    (["--accuracy-budget", "", "--eval-images", "VAL"], "expected 'top1=0.3,top5=0.3'"),
    (["--accuracy-budget", "top1=oops", "--eval-images", "VAL"], "expected 'top1=0.3,top5=0.3'"),
    (["--max-minutes", "-1"], "--max-minutes must be a positive number"),
])
def test_bad_options_are_refused(folder, calib_dir, val_dir, args, message):
    args = [val_dir if a == "VAL" else a for a in args]
    line = one_error_line(run(calibrate_cmd(os.path.join(folder, "model.onnx"), calib_dir, "--count", "32", *args)))
    assert message in line, line


def test_a_budget_in_scientific_notation_is_accepted():
    from inception_deploy.calibration.budget import Budget

    assert Budget.parse("top1=1e-3,top5=2.5E-1") == Budget(0.001, 0.25)
