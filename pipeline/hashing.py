"""Content hashes of files: the one ``file_sha256`` every stage and the device-side builder use,
and the cache that keeps re-hashing thousands of images cheap.

Standard library only (Python 3.8), so a deploy bundle's builder can check its inputs on a device
that has nothing but Python and TensorRT.
"""
import hashlib
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from inception_deploy.pipeline.errors import UserError

CHUNK = 1 << 20
HASH_CACHE_ENV = "INCEPTION_DEPLOY_CACHE"


def file_sha256(path: str, chunk: int = CHUNK) -> str:
    """sha256 of a file's bytes, read in ``chunk``-sized blocks (hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class HashCache:
    """sha256 of files, keyed by (real path, size, mtime_ns, ctime_ns, inode).

    Kept in memory, and in ``<cache folder>/file-sha256.sqlite`` (``$INCEPTION_DEPLOY_CACHE``,
    else ``$XDG_CACHE_HOME/inception-deploy`` or ``~/.cache/inception-deploy``) shared by runs;
    where that cannot be written, in memory only. ctime and inode are in the key because
    ``touch -d`` and ``cp -p`` can restore a modified file's mtime but not its ctime.
    """

    def __init__(self, folder: Optional[str] = None) -> None:
        self.memory: Dict[Tuple[Any, ...], str] = {}
        self.db: Any = None
        folder = folder or os.environ.get(HASH_CACHE_ENV) or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "inception-deploy")
        try:
            import sqlite3

            os.makedirs(folder, exist_ok=True)
            self.db = sqlite3.connect(os.path.join(folder, "file-sha256.sqlite"), timeout=10)
            self.db.execute("CREATE TABLE IF NOT EXISTS file_hashes (path TEXT PRIMARY KEY, stat TEXT NOT NULL, "
                            "sha256 TEXT NOT NULL)")       # one row per file: a changed file replaces its row
        except Exception:  # no sqlite3, read-only home, locked or corrupt file: a cache is optional
            self.db = None

    @staticmethod
    def key(path: str) -> Tuple[Any, ...]:
        try:
            st = os.stat(path)
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror}") from None
        return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def sha256(self, path: str) -> str:
        return self.sha256_many([path])[0]

    def sha256_many(self, paths: Sequence[str], progress: Optional[str] = None) -> List[str]:
        keys = [self.key(p) for p in paths]
        stored = self._lookup([k for k in keys if k not in self.memory])
        fresh: Dict[Tuple[Any, ...], str] = {}
        todo = [(p, k) for p, k in zip(paths, keys) if k not in self.memory and k not in stored]
        bar = None
        if progress and len(todo) > 500:
            from inception_deploy.pipeline.progress import Progress
            bar = Progress(len(todo), progress, unit="file")
        for path, key in todo:
            try:
                fresh[key] = file_sha256(path)
            except OSError as e:
                raise UserError(f"cannot read {path}: {e.strerror}") from None
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        self.memory.update(stored)
        self.memory.update(fresh)
        self._store(fresh)
        return [self.memory[k] for k in keys]

    def _lookup(self, keys: Iterable[Tuple[Any, ...]]) -> Dict[Tuple[Any, ...], str]:
        found: Dict[Tuple[Any, ...], str] = {}
        if self.db is None:
            return found
        try:
            for key in keys:
                row = self.db.execute("SELECT stat, sha256 FROM file_hashes WHERE path = ?", (key[0],)).fetchone()
                if row and row[0] == repr(key[1:]):
                    found[key] = row[1]
        except Exception:
            self.db = None
        return found

    def _store(self, fresh: Dict[Tuple[Any, ...], str]) -> None:
        if self.db is None or not fresh:
            return
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO file_hashes (path, stat, sha256) VALUES (?, ?, ?)",
                                    [(k[0], repr(k[1:]), v) for k, v in fresh.items()])
        except Exception as e:  # e.g. a read-only or full disk: keep going without the shared cache
            print(f"note: file-hash cache not updated ({e})", file=sys.stderr)
            self.db = None


_HASH_CACHE: List[HashCache] = []


def hash_cache() -> HashCache:
    """The process's :class:`HashCache` (opened on first use)."""
    if not _HASH_CACHE:
        _HASH_CACHE.append(HashCache())
    return _HASH_CACHE[0]


def cached_sha256(path: str) -> str:
    """sha256 of a file, through the process's :class:`HashCache`."""
    return hash_cache().sha256(path)
