"""The one publisher and the run lock (pipeline/publish.py): files of one run appear together or not
at all, one run per output folder at a time, a dead owner's lock and leftovers are taken over and
cleaned, a live owner's are not, and `summary` never reports what is inside a dot folder."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths, publish
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.summary import summarize


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


HOLD_LOCK = """
import sys, time
sys.path.insert(0, {root!r})
from inception_deploy.pipeline import publish
with publish.RunLock({folder!r}, "test holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_publication_renames_every_file_together_the_tracked_one_last(tmp_path):
    folder = str(tmp_path)
    with publish.Publication(folder) as pub:
        for name in ("model.int8.onnx", "model.int8.calib.cache", "model.fp16.onnx"):
            with open(pub.add(os.path.join(folder, name)), "w") as f:
                f.write(name)
        pub.last(os.path.join(folder, "model.int8.onnx"))
        assert os.listdir(folder) == [os.path.basename(pub.staging)]       # nothing visible before the end
        assert pub.order()[-1] == "model.int8.onnx"
    assert sorted(os.listdir(folder)) == ["model.fp16.onnx", "model.int8.calib.cache", "model.int8.onnx"]


def test_a_failing_run_publishes_nothing_and_keeps_the_earlier_set(tmp_path):
    folder = str(tmp_path)
    (tmp_path / "model.onnx").write_text("old")
    with pytest.raises(RuntimeError):
        with publish.Publication(folder) as pub:
            with open(pub.add(os.path.join(folder, "model.onnx")), "w") as f:
                f.write("new")
            raise RuntimeError("killed halfway")
    assert os.listdir(folder) == ["model.onnx"] and (tmp_path / "model.onnx").read_text() == "old"


def test_a_live_lock_is_waited_for_then_refused_naming_the_owner(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(root=paths.REPO_ROOT, folder=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        with pytest.raises(UserError) as e:
            with publish.RunLock(str(tmp_path), "calibrate", wait_s=0.6):
                pass
        waited = time.monotonic() - t
        assert 0.5 < waited < 5
        text = str(e.value)
        assert f"pid {holder.pid}" in text and "test holder" in text and publish.LOCK_NAME in text
        assert "\n" not in text
    finally:
        holder.kill()
        holder.wait()
    # its owner is gone (kill -9): the lock is stale and taken over at once
    with publish.RunLock(str(tmp_path), "calibrate", wait_s=0):
        owner = json.load(open(os.path.join(str(tmp_path), publish.LOCK_NAME)))
        assert owner["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(str(tmp_path), publish.LOCK_NAME))


def test_lock_is_reentrant_and_removes_the_folders_it_created(tmp_path):
    folder = str(tmp_path / "a" / "b")
    with publish.RunLock(folder, "x", wait_s=0):
        with publish.RunLock(folder, "x", wait_s=0):
            assert os.path.isfile(os.path.join(folder, publish.LOCK_NAME))
        assert os.path.isfile(os.path.join(folder, publish.LOCK_NAME))
    assert not (tmp_path / "a").exists()


def test_leftovers_of_dead_owners_are_cleaned_live_ones_kept_and_never_reported(tmp_path, test_model_onnx):
    folder = tmp_path / "onnx"
    folder.mkdir()
    for name in ("model.onnx", "model.onnx.json"):
        (folder / name).write_bytes(open(os.path.join(os.path.dirname(test_model_onnx), name), "rb").read())
    dead = dead_pid()
    killed = folder / (".calibrate-pid%d-abc123" % dead)
    killed.mkdir()
    (killed / "candidate-001.onnx").write_bytes((folder / "model.onnx").read_bytes())
    mf.write(mf.read(str(folder / "model.onnx")), str(killed / "candidate-001.onnx"))
    (folder / (".model.onnx.json-pid%d-x1y2z3.tmp" % dead)).write_text("{")
    live = folder / (".export-pid%d-live01" % os.getppid())
    live.mkdir()
    legacy = folder / ".export.k2j4h5g6"
    legacy.mkdir()
    os.utime(str(legacy), (time.time() - 2 * publish.LEGACY_AGE_S,) * 2)
    fresh_legacy = folder / ".calibrate.a1b2c3d4"
    fresh_legacy.mkdir()

    text = summarize(str(tmp_path))
    assert "candidate-001" not in text and "next: make calibrate" in text

    with publish.RunLock(str(folder), "test", wait_s=0):
        pass
    left = sorted(os.listdir(str(folder)))
    assert left == [".calibrate.a1b2c3d4", live.name, "model.onnx", "model.onnx.json"], left


def test_a_publication_killed_after_its_commit_point_is_finished_by_the_next_run(tmp_path):
    folder = str(tmp_path)
    (tmp_path / "model.int8.onnx").write_text("old int8")
    (tmp_path / "model.int8.calib.cache").write_text("old cache")
    staging = tmp_path / (".publish-pid%d-q9w8e7" % dead_pid())
    staging.mkdir()
    (staging / "model.int8.onnx").write_text("new int8")          # the cache was already renamed
    (staging / publish.PLAN_NAME).write_text(json.dumps({"pid": 1, "files": ["model.int8.calib.cache",
                                                                             "model.int8.onnx"]}))
    (tmp_path / "model.int8.calib.cache").write_text("new cache")
    publish.clean_stale(folder)
    assert (tmp_path / "model.int8.onnx").read_text() == "new int8"
    assert sorted(os.listdir(folder)) == ["model.int8.calib.cache", "model.int8.onnx"]


def test_atomic_temp_files_carry_the_writer_pid(tmp_path):
    from inception_deploy.pipeline import atomic

    seen = []
    with atomic.atomic_path(str(tmp_path / "x.json")) as tmp:
        seen.append(os.path.basename(tmp))
        open(tmp, "w").close()
    assert publish.leftover_owner(seen[0]) == os.getpid()


def test_a_run_killed_with_sigkill_leaves_nothing_the_next_run_keeps(tmp_path):
    """A writer killed -9 while staging: nothing at the final names, and the next run removes its staging."""
    script = ("import sys, time\nsys.path.insert(0, %r)\nfrom inception_deploy.pipeline import publish\n"
              "with publish.RunLock(%r, 'w'):\n"
              "    with publish.Publication(%r) as pub:\n"
              "        open(pub.add(%r), 'w').write('partial')\n"
              "        print('staged', flush=True)\n"
              "        time.sleep(60)\n") % (paths.REPO_ROOT, str(tmp_path), str(tmp_path), str(tmp_path / "out.bin"))
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "staged"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    names = os.listdir(str(tmp_path))
    assert "out.bin" not in names and any(n.startswith(".publish-pid%d-" % p.pid) for n in names)
    with publish.RunLock(str(tmp_path), "next", wait_s=1):
        pass
    assert os.listdir(str(tmp_path)) == []
