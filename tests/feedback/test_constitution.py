"""Constitutions: strict parsing with errors that name the file and the principle, and a stable digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from steering.errors import InputFormatError
from steering.feedback.constitution import Example, load_constitution

EXAMPLES = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "constitutions"

GOOD = """
name = "qa"
description = "short answers"

[[principles]]
id = "correct"
text = "The answer is correct."

[[principles.examples]]
prompt = "What is 1 + 1?"
better = "2"
worse = "3"

[[principles]]
id = "short"
text = "The answer is short."
"""


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_principles_in_order_with_examples(tmp_path):
    constitution = load_constitution(write(tmp_path, GOOD))
    assert constitution.name == "qa"
    assert [p.id for p in constitution.principles] == ["correct", "short"]
    assert constitution.principle("correct").examples == (Example("What is 1 + 1?", "2", "3"),)
    assert constitution.principle("short").examples == ()


def test_name_defaults_to_the_file_stem(tmp_path):
    path = write(tmp_path, '[[principles]]\nid = "a"\ntext = "Be kind."\n', name="kindness.toml")
    assert load_constitution(path).name == "kindness"


def test_digest_ignores_comments_formatting_and_name_but_not_content(tmp_path):
    first = load_constitution(write(tmp_path, GOOD, "a.toml")).digest
    reformatted = GOOD.replace('name = "qa"', '# a comment\nname = "other"').replace(" = ", "=")
    assert load_constitution(write(tmp_path, reformatted, "b.toml")).digest == first
    changed = GOOD.replace("The answer is short.", "The answer is brief.")
    assert load_constitution(write(tmp_path, changed, "c.toml")).digest != first
    reordered_example = GOOD.replace('better = "2"\nworse = "3"', 'better = "3"\nworse = "2"')
    assert load_constitution(write(tmp_path, reordered_example, "d.toml")).digest != first
    assert len(first) == 12 and int(first, 16) >= 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[principles]]\nid = "a"\ntxt = "x"\n', "principle 'a' (number 1) of the constitution file"),
        ('[[principles]]\nid = "a"\ntext = "  "\n', "has no text"),
        ('[[principles]]\nid = "a"\n', "has no text"),
        ('[[principles]]\nid = "a"\ntext = "x"\n[[principles]]\nid = "a"\ntext = "y"\n', "two principles"),
        ('[[principles]]\ntext = "x"\n', "principle 1 of the constitution file"),
        ('[[principles]]\nid = "has space"\ntext = "x"\n', "needs an id"),
        ('titel = "x"\n[[principles]]\nid = "a"\ntext = "x"\n', "unknown key 'titel'"),
        ('name = "x"\n', "has no principles"),
        ("principles = []\n", "has no principles"),
        (
            '[[principles]]\nid = "a"\ntext = "x"\nexamples = [{prompt = "p", better = "b"}]\n',
            "non-empty worse",
        ),
        (
            '[[principles]]\nid = "a"\ntext = "x"\nexamples = [{prompt = "p", better = "b", worse = "w", x = 1}]\n',
            "unknown key 'x'",
        ),
        ("[[principles]\n", "not valid TOML"),
        ('name = 3\n[[principles]]\nid = "a"\ntext = "x"\n', "name must be a string"),
    ],
)
def test_bad_constitutions_are_refused_naming_file_and_principle(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputFormatError) as caught:
        load_constitution(path)
    assert message.lower() in str(caught.value).lower()
    assert str(path) in str(caught.value)


def test_unknown_key_suggests_the_closest(tmp_path):
    with pytest.raises(InputFormatError, match='Did you mean "text"'):
        load_constitution(write(tmp_path, '[[principles]]\nid = "a"\ntxt = "x"\n'))


def test_missing_file_and_unknown_principle(tmp_path):
    with pytest.raises(InputFormatError, match="does not exist"):
        load_constitution(tmp_path / "nope.toml")
    constitution = load_constitution(write(tmp_path, GOOD))
    with pytest.raises(InputFormatError, match=r"no principle 'corect'.*Did you mean \"correct\""):
        constitution.principle("corect")


def test_not_utf8_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[[principles]]\nid = "a"\ntext = "\xff"\n')
    with pytest.raises(InputFormatError, match="UTF-8"):
        load_constitution(path)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_constitutions_parse(path):
    constitution = load_constitution(path)
    assert constitution.principles and all(p.text for p in constitution.principles)
