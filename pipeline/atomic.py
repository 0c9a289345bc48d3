"""Atomic writes (every artifact appears complete at its final path, or not at all) and JSON reads.

A temp file is written in the destination folder (same filesystem) and renamed over the final
path with ``os.replace``; on any exception the temp file is removed and the destination is left
as it was. Temp names carry the writer's pid (``.<name>-pid<PID>-<random>.tmp``), so what a
killed writer leaves is recognised and removed by the next run (``pipeline.publish``).
"""
import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

from inception_deploy.pipeline.publish import temp_tag


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temp path next to ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` keeps an extension on the temp name for writers that look at it
    (e.g. ``.onnx``). A directory written at the temp path is moved into place too.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + temp_tag(), suffix=suffix + ".tmp",
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):  # mkstemp (and some writers' own temp files) make 0600
            os.chmod(tmp, 0o666 & ~_umask())
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str, fix: str = "regenerate it") -> Any:
    """Load a JSON file; a malformed one is a one-line UserError ending in ``fix``."""
    from inception_deploy.pipeline.errors import UserError

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); {fix}") from None


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
