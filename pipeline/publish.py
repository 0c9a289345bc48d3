"""The one publisher: the files of one run appear together, one run per output folder at a time, and
what killed runs leave behind is cleaned up.

Every stage that writes into a folder does::

    with publish.RunLock(folder, "calibrate"):              # waits for, then refuses, a concurrent run
        work = publish.temp_dir(folder, "calibrate")        # .calibrate-pid<PID>-<random>/
        ...
        with publish.Publication(folder) as pub:            # .publish-pid<PID>-<random>/ in folder
            pub.add(final_cache, src=cache_in_work)
            pub.write_manifest(cache_manifest, final_cache)
            pub.add(final_int8, src=int8_in_work)
            pub.write_manifest(int8_manifest, final_int8)
            pub.last(final_int8)                            # the file make tracks is renamed last

Nothing reaches the final names until every file of the run is complete in the staging folder;
then a plan file is written (the commit point) and the files are renamed into place in order.
A run killed after the commit point is finished by the next run into that folder (roll
forward); one killed before it is removed. Temp names carry the owner's pid, so the next run
can tell leftovers of dead owners (removed) from a live run's files (left alone).

The lock is ``<folder>/.inception-deploy.lock``, created with O_EXCL and holding the owner's
pid, host, command and start time. A lock whose pid is dead on this host is stale and taken
over; a live one is waited for (``INCEPTION_DEPLOY_LOCK_WAIT`` seconds, default 60), then the
run refuses in one line naming the owner and the way out. Device-side: stdlib only.
"""
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from inception_deploy.pipeline.errors import UserError

LOCK_NAME = ".inception-deploy.lock"
WAIT_ENV = "INCEPTION_DEPLOY_LOCK_WAIT"
DEFAULT_WAIT_S = 60.0
PLAN_NAME = ".plan.json"
UNWRITTEN_LOCK_GRACE_S = 5.0      # a lock file still empty after this long lost its owner mid-creation
LEGACY_AGE_S = 3600.0             # temp names without a pid (older versions): removed once this old
_TEMP = re.compile(r"^\..*-pid(\d+)-[A-Za-z0-9_]+(\..*)?$")
_LEGACY = re.compile(r"^\.((export|calibrate|publish)\.[A-Za-z0-9_]{8}|.+\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?\.tmp)$")

_held: Dict[str, int] = {}        # folder -> nesting depth of this process's locks


def temp_tag() -> str:
    """The part of a temp name that names its owner: ``-pid<PID>-``."""
    return "-pid%d-" % os.getpid()


def temp_dir(folder: str, kind: str) -> str:
    """A new ``<folder>/.<kind>-pid<PID>-<random>/`` for one run's work files."""
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkdtemp(prefix=".%s%s" % (kind, temp_tag()), dir=folder)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


@dataclass
class LockOwner:
    pid: int
    host: str
    command: str
    started: str

    def line(self) -> str:
        where = "" if self.host == socket.gethostname() else " on host %s" % self.host
        return "pid %d%s: %s, started %s" % (self.pid, where, self.command or "?", self.started or "?")

    def stale(self) -> bool:
        return self.host == socket.gethostname() and not pid_alive(self.pid)


def _read_owner(path: str) -> Optional[LockOwner]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return LockOwner(int(data["pid"]), str(data.get("host", "")), str(data.get("command", "")),
                         str(data.get("started", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _age(path: str) -> float:
    try:
        return time.time() - os.path.getmtime(path)
    except OSError:
        return 0.0


class RunLock:
    """``with RunLock(folder, "calibrate"):`` -- one inception-deploy run writes into ``folder`` at a time.

    Re-entrant within a process. On acquiring, leftovers of dead owners in ``folder`` are
    cleaned (:func:`clean_stale`). ``wait_s`` defaults to ``$INCEPTION_DEPLOY_LOCK_WAIT`` or 60 s.
    Folders the lock had to create are removed again on release if the run left them empty.
    """

    def __init__(self, folder: str, what: str, wait_s: Optional[float] = None) -> None:
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.what = what
        self.wait_s = _wait_seconds() if wait_s is None else float(wait_s)
        self._created: List[str] = []

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        if _held.get(self.folder):
            _held[self.folder] += 1
            return
        missing = self.folder
        while not os.path.exists(missing) and os.path.dirname(missing) != missing:
            self._created.append(missing)
            missing = os.path.dirname(missing)
        os.makedirs(self.folder, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        told = False
        while not self._try_create():
            owner = _read_owner(self.path)
            if owner is None and _age(self.path) > UNWRITTEN_LOCK_GRACE_S or owner is not None and owner.stale():
                self._take_over(owner)
                continue
            if time.monotonic() >= deadline:
                who = owner.line() if owner else "an owner still writing the lock file"
                raise UserError("%s is in use by another inception-deploy run (%s); wait for it to finish and run "
                                "%s again, or, if that process is gone, delete %s"
                                % (self.folder, who, self.what, self.path))
            if not told and owner is not None:
                print("waiting up to %.0f s for %s: in use by %s" % (self.wait_s, self.folder, owner.line()),
                      file=sys.stderr)
                told = True
            time.sleep(0.2)
        _held[self.folder] = 1
        clean_stale(self.folder)

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.what,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        return True

    def _take_over(self, seen: Optional[LockOwner]) -> None:
        """Remove a stale lock. It is first renamed to a private name (atomic: of two processes
        taking over the same stale lock, one gets it); if what was renamed is not the lock that
        was judged stale (a third run created a fresh one in between), it is put back."""
        grave = "%s.stale%s%d" % (self.path, temp_tag(), int(time.time() * 1000) % 100000)
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        if _read_owner(grave) != seen:
            try:
                os.link(grave, self.path)
            except OSError:
                pass
        os.remove(grave)
        if seen is not None:
            print("note: took over the lock of %s, whose process is gone" % seen.line(), file=sys.stderr)

    def release(self) -> None:
        depth = _held.get(self.folder, 0)
        if depth > 1:
            _held[self.folder] = depth - 1
            return
        _held.pop(self.folder, None)
        owner = _read_owner(self.path)
        if owner is not None and owner.pid == os.getpid():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        for folder in self._created:            # deepest first; stops at the first one not empty
            try:
                os.rmdir(folder)
            except OSError:
                break
        self._created = []


def _wait_seconds() -> float:
    text = os.environ.get(WAIT_ENV, "")
    if not text:
        return DEFAULT_WAIT_S
    try:
        value = float(text)
    except ValueError:
        raise UserError("%s=%r is not a number of seconds" % (WAIT_ENV, text)) from None
    if value < 0:
        raise UserError("%s must be >= 0 seconds, got %s" % (WAIT_ENV, text))
    return value


class Publication:
    """Stage the files of one run in ``<folder>/.publish-pid<PID>-<random>/`` and rename them into
    ``folder`` together when the ``with`` block ends without an exception (else nothing is published)."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(folder)
        self.staging = temp_dir(self.folder, "publish")
        self._names: List[str] = []
        self._last: Optional[str] = None

    def __enter__(self) -> "Publication":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def staged(self, final: str) -> str:
        """Where ``final`` (a path in the publication's folder) is staged."""
        if os.path.dirname(os.path.abspath(final)) != self.folder:
            raise ValueError("%s is not in the publication folder %s" % (final, self.folder))
        return os.path.join(self.staging, os.path.basename(final))

    def add(self, final: str, src: Optional[str] = None) -> str:
        """Register ``final``; with ``src``, move that file into the staging folder. Returns the staged path."""
        staged = self.staged(final)
        if src is not None:
            shutil.move(src, staged)
        name = os.path.basename(final)
        if name not in self._names:
            self._names.append(name)
        return staged

    def write_manifest(self, manifest: Any, final: str) -> str:
        """Write ``final``'s manifest (``pipeline.manifest.write``) from its staged file; returns the staged sidecar."""
        from inception_deploy.pipeline import manifest as mf

        staged = self.add(final)
        side = mf.write(manifest, staged)
        self.add(mf.sidecar(final))
        return side

    def add_artifact(self, final: str, src: str, manifest: Any) -> str:
        """An artifact and its manifest: ``src`` moved in as ``final``, then the manifest written from
        the staged file (so its sha256 is the published file's). Returns the staged path."""
        staged = self.add(final, src=src)
        self.write_manifest(manifest, final)
        return staged

    def last(self, final: str) -> None:
        """Rename ``final`` (the file ``make`` tracks) after every other file, its manifest just before it."""
        self._last = os.path.basename(final)

    def order(self) -> List[str]:
        if self._last is None:
            return list(self._names)
        from inception_deploy.pipeline.manifest import sidecar

        tail = [n for n in (sidecar(self._last), self._last) if n in self._names]
        return [n for n in self._names if n not in tail] + tail

    def commit(self) -> None:
        order = self.order()
        missing = [n for n in order if not os.path.exists(os.path.join(self.staging, n))]
        if missing:
            self.abort()
            raise RuntimeError("publication of %s lacks %s" % (self.folder, ", ".join(missing)))
        plan = os.path.join(self.staging, PLAN_NAME)
        with open(plan + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "files": order}, f)
        os.replace(plan + ".tmp", plan)            # the commit point: every staged file is complete
        _finish(self.staging, self.folder, order)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _finish(staging: str, folder: str, order: List[str]) -> None:
    """Rename the staged files into ``folder`` in ``order`` (the ones not moved yet), then drop the staging folder."""
    for name in order:
        src = os.path.join(staging, name)
        if os.path.exists(src):
            os.replace(src, os.path.join(folder, name))
    shutil.rmtree(staging, ignore_errors=True)


def _plan(staging: str) -> Optional[List[str]]:
    try:
        with open(os.path.join(staging, PLAN_NAME), encoding="utf-8") as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(files, list) and all(isinstance(n, str) and n == os.path.basename(n) for n in files):
        return files
    return None


def leftover_owner(name: str) -> Optional[int]:
    """The owner's pid of a temp name (``.x-pid<PID>-<random>...``); None for any other name."""
    m = _TEMP.match(name)
    return int(m.group(1)) if m else None


def clean_stale(folder: str) -> List[str]:
    """Finish or remove what killed runs left in ``folder``; returns the names handled.

    A publication of a dead owner that reached its commit point is finished (its files renamed
    into place); any other temp folder or file of a dead owner is removed, as are temp names
    of older versions (no pid in the name) once an hour old. Live owners' files are left alone.
    """
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    handled: List[str] = []
    removed: List[str] = []
    for name in names:
        path = os.path.join(folder, name)
        pid = leftover_owner(name)
        if pid is not None:
            if pid == os.getpid() or pid_alive(pid):
                continue
        elif not (_LEGACY.match(name) and _age(path) > LEGACY_AGE_S):
            continue
        plan = _plan(path) if os.path.isdir(path) and name.startswith(".publish") else None
        if plan is not None:
            _finish(path, folder, plan)
            print("note: finished publishing %s in %s (its run was killed after staging them)"
                  % (", ".join(plan), folder), file=sys.stderr)
            handled.append(name)
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                continue
        removed.append(name)
    if removed:
        print("note: removed %d leftover(s) of killed runs in %s (%s)"
              % (len(removed), folder, ", ".join(removed[:3]) + (" ..." if len(removed) > 3 else "")), file=sys.stderr)
    return handled + removed
