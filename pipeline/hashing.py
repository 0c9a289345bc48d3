"""Content hashes of files: the one ``file_sha256`` every stage and the device-side builder use.

Standard library only (Python 3.8), so a deploy bundle's builder can check its inputs on a device
that has nothing but Python and TensorRT.
"""
import hashlib

CHUNK = 1 << 20


def file_sha256(path: str, chunk: int = CHUNK) -> str:
    """sha256 of a file's bytes, read in ``chunk``-sized blocks (hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
