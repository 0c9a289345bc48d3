"""Name the five packages by their install namespace: ``pipeline.x`` -> ``inception_deploy.pipeline.x``.

The repository keeps its top-level folders (pipeline/, engines/, runtime/, benchmarks/,
calibration/); pyproject installs them as ``inception_deploy.<package>`` and, in a checkout,
``inception_deploy/__init__.py`` resolves the same names to those folders. This rewrites what
names them as modules, in every tracked text file: ``from <package>... import`` statements (also in
Markdown and in code held in strings), ``import <package>`` bindings, dotted module names in string
literals (``"engines.cli"``) and ``-m <package>`` (``python -m engines build``, ``"-m", "pipeline"``).

Idempotent (names already under ``inception_deploy.`` are left alone), so it can be run again after
merging a branch that still uses the short names. ``--check`` lists the files it would change and
exits 1 if there are any. Run from the repository root.
"""
import argparse
import re
import subprocess
import sys
from typing import List

NAMESPACE = "inception_deploy"
PACKAGES = ("pipeline", "engines", "runtime", "benchmarks", "calibration")
SUFFIXES = (".py", ".md", ".yml", ".sh", ".txt", ".cfg", ".toml")
SKIP = ("tools/namespace_imports.py",)

_P = "(?:%s)" % "|".join(PACKAGES)
RULES = [
    # from pipeline.manifest import X   (code, Markdown examples, code in strings, also after a "\n")
    (re.compile(r"(?:(?<=\\n)|(?<![\w.]))from (%s(?:\.\w+)*) import\b" % _P), r"from %s.\1 import" % NAMESPACE),
    # import pipeline.manifest as mf
    (re.compile(r"^(\s*)import (%s(?:\.\w+)*) as (\w+)" % _P, re.M), r"\1import %s.\2 as \3" % NAMESPACE),
    # import runtime   (binds the short name: keep it)
    (re.compile(r"^(\s*)import (%s)\s*(#.*)?$" % _P, re.M), r"\1from %s import \2  \3" % NAMESPACE),
    # "engines.cli", 'pipeline.export_cli': module names in string literals
    (re.compile(r"([\"'])(%s(?:\.\w+)+)\1" % _P), r"\1%s.\2\1" % NAMESPACE),
    # "-m", "pipeline"   (subprocess argument lists)
    (re.compile(r"([\"'])-m\1(,\s*)([\"'])(%s(?:\.\w+)*)\3" % _P), r"\1-m\1\2\3%s.\4\3" % NAMESPACE),
    # python -m engines build   (scripts, docs, prog names)
    (re.compile(r"(-m )(%s(?:\.\w+)*)\b(?!/)" % _P), r"\1%s.\2" % NAMESPACE),
]


def rewrite(text: str) -> str:
    for pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    return re.sub(r"from %s import (\w+)  $" % NAMESPACE, r"from %s import \1" % NAMESPACE, text, flags=re.M)


def tracked_files() -> List[str]:
    out = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    return [f for f in out if f.endswith(SUFFIXES) and f not in SKIP and not f.startswith("tests/data/")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="list what would change, exit 1 if anything would")
    args = p.parse_args()
    changed = []
    for path in tracked_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = rewrite(text)
        if new != text:
            changed.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    print("%s %d file(s)%s" % ("would change" if args.check else "changed", len(changed),
                               (": " + ", ".join(changed)) if changed else ""))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
