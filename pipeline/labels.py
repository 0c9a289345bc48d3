"""Class labels: WordNet ids and their human-readable descriptions (device-side, no torch)."""
import os
from typing import Dict, List, Tuple

from inception_deploy.pipeline.errors import UserError


def read_wnids(path: str) -> List[str]:
    """One WordNet id a line; the line number is the class index (Tiny-ImageNet's wnids.txt)."""
    if not os.path.isfile(path):
        raise UserError(f"label file not found: {path} (expected one WordNet id a line, e.g. wnids.txt)")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_words(path: str) -> Dict[str, str]:
    """``wnid<TAB>names`` lines (Tiny-ImageNet's words.txt) -> {wnid: names}."""
    if not os.path.isfile(path):
        raise UserError(f"descriptions file not found: {path} (expected 'wnid<TAB>names' lines, e.g. words.txt)")
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            wnid, _, names = line.rstrip("\n").partition("\t")
            if wnid:
                out[wnid] = names
    return out


def read_class_labels(data_dir: str) -> Tuple[List[str], Dict[str, str]]:
    """A Tiny-ImageNet-style folder's label_names and label_descriptions.

    label_names are the *sorted* WordNet ids of ``wnids.txt`` (the order every model folder uses; the
    public copy's file is not sorted), each described by ``words.txt`` (the id itself where it has no entry).
    """
    wnids = sorted(read_wnids(os.path.join(data_dir, "wnids.txt")))
    words = read_words(os.path.join(data_dir, "words.txt"))
    return wnids, {w: words.get(w, w) for w in wnids}


def display_name(label: str, descriptions: Dict[str, str]) -> str:
    """The first of a description's comma-separated names, else the label itself."""
    text = descriptions.get(label, "")
    return text.split(",")[0].strip() or label
