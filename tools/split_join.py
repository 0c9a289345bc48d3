"""Split a file into parts of at most N MiB with a sha256 list, and join them back, verified.

The GPU machine returns files of at most 16 MiB (64 MiB a call), and carries at most 64 MiB of
working tree per call: trained weights come back split, data shards go out split. ``join``
refuses to write anything unless every part and the whole file match their recorded sha256.
"""
import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inception_deploy.pipeline import atomic  # noqa: E402


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(path: str, out_dir: str, part_mib: float = 15.5) -> str:
    limit = int(part_mib * 2**20)
    with open(path, "rb") as f:
        data = f.read()
    os.makedirs(out_dir, exist_ok=True)
    name = os.path.basename(path)
    parts = []
    for i in range(0, max(len(data), 1), limit):
        chunk = data[i:i + limit]
        part = f"{name}.part{len(parts):03d}"
        atomic.write_bytes(os.path.join(out_dir, part), chunk)
        parts.append({"file": part, "sha256": _sha(chunk), "bytes": len(chunk)})
    index = os.path.join(out_dir, f"{name}.parts.json")
    atomic.write_json(index, {"file": name, "sha256": _sha(data), "bytes": len(data), "parts": parts})
    return index


def join(index_path: str, out_path: str) -> None:
    with open(index_path) as f:
        index = json.load(f)
    folder = os.path.dirname(index_path)
    chunks = []
    for part in index["parts"]:
        with open(os.path.join(folder, part["file"]), "rb") as f:
            chunk = f.read()
        if _sha(chunk) != part["sha256"]:
            raise SystemExit(f"error: {part['file']} is corrupt (sha256 mismatch); copy it again")
        chunks.append(chunk)
    data = b"".join(chunks)
    if _sha(data) != index["sha256"]:
        raise SystemExit(f"error: joined {index['file']} does not match its sha256; parts missing or reordered")
    atomic.write_bytes(out_path, data)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("file")
    s.add_argument("--out", required=True)
    s.add_argument("--part-mib", type=float, default=15.5)
    j = sub.add_parser("join")
    j.add_argument("index", help="<file>.parts.json")
    j.add_argument("--out", required=True)
    a = p.parse_args()
    if a.cmd == "split":
        print(split(a.file, a.out, a.part_mib))
    else:
        join(a.index, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
