"""The "dual" building blocks: notes → rows and held-out texts, exact perplexity, slots filled by quoting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from steering.controls import Adapter, Temperature
from steering.errors import InputFormatError, InvalidArgument
from steering.recipes.dual import (
    COMMANDS,
    Slot,
    answer,
    chunk_text,
    example_notes,
    fill_slot,
    heldout_names,
    normalise_span,
    notes_dataset,
    notes_perplexity,
    read_notes,
    skill_prompt,
    slot_empty_rate,
    slot_hallucination_rate,
    slot_prompt,
)
from steering.train import SFTConfig, load_examples, train_sft


def _words(text: str) -> int:
    return len(text.split())


def test_example_notes_are_a_persons_notes_of_the_right_size():
    notes = read_notes(example_notes())
    assert len(notes) >= 12
    for note in notes:
        assert 80 <= _words(note.text) <= 250, (note.name, _words(note.text))
        assert note.text.startswith("# ")
    assert len(COMMANDS) >= 24 and len(set(COMMANDS)) == len(COMMANDS)


def test_commands_name_topics_of_the_notes():
    """Each command shares at least one content word (five letters or more) with some note."""
    corpus = normalise_span(" ".join(note.text for note in read_notes(example_notes())))
    for command in COMMANDS:
        words = [w.strip("?,.") for w in normalise_span(command).split() if len(w.strip("?,.")) >= 5]
        assert any(w in corpus for w in words if w not in ("notes", "write", "remind", "summarise")), command


def test_chunks_fit_a_row_and_keep_every_word_in_order(tiny):
    text = read_notes(example_notes())[0].text + "\n\n" + "x" * 300  # a "word" longer than any row
    for max_length in (24, 64, 128):
        chunks = chunk_text(tiny, text, max_length=max_length)
        assert len(chunks) > 1
        for chunk in chunks:
            ids = tiny.encode("") + tiny.encode_continuation(chunk) + [tiny.eos_token_ids[0]]
            assert len(ids) <= max_length, (max_length, chunk)
        assert "".join("".join(chunks).split()) == "".join(text.split())
    for bad in (2, "64", 1.5):
        with pytest.raises(InvalidArgument, match="max_length"):
            chunk_text(tiny, text, max_length=bad)
    whole = read_notes(example_notes())[0].text
    assert chunk_text(tiny, whole, max_length=4096) == [whole]


def test_paragraphs_are_packed_together_when_they_fit(tiny):
    text = "one two.\n\nthree four.\n\nfive six."
    budget_for_two = len(tiny.encode_continuation("one two.\n\nthree four.")) + 2  # BOS + EOS
    assert chunk_text(tiny, text, max_length=budget_for_two) == ["one two.\n\nthree four.", "five six."]


def test_dataset_holds_out_whole_notes_and_writes_sft_rows(tiny, tmp_path):
    notes = read_notes(example_notes())
    out = tmp_path / "rows.jsonl"
    rows, held = notes_dataset(example_notes(), model=tiny, heldout=3, max_length=256, out=out)
    names = heldout_names(notes, 3)
    assert len(names) == 3 and len(set(names)) == 3
    held_notes = [n for n in notes if n.name in names]
    train_notes = [n for n in notes if n.name not in names]
    joined_rows = "".join("".join(row["text"].split()) for row in rows)
    assert joined_rows == "".join("".join(n.text.split()) for n in train_notes)
    assert "".join("".join(t.split()) for t in held) == "".join("".join(n.text.split()) for n in held_notes)
    assert all(set(row) == {"text"} for row in rows)
    demonstrations = load_examples(out, "demonstrations")  # the file train_sft reads: loss on the whole text
    assert [d.completion for d in demonstrations] == [row["text"] for row in rows]
    assert all(d.prompt == "" for d in demonstrations)


def test_heldout_by_name_and_spread(tmp_path, tiny):
    notes = read_notes(example_notes())
    names = [n.name for n in notes]
    spread = heldout_names(notes, 3)
    assert spread == sorted(spread) and spread[0] != names[0] and spread[-1] != names[-1]
    rows, held = notes_dataset(example_notes(), model=tiny, heldout=["garden-roses"], max_length=4096)
    assert held == [notes[names.index("garden-roses")].text] and len(rows) == len(notes) - 1
    with pytest.raises(InvalidArgument, match=r"(?i)not in the folder: roses"):
        heldout_names(notes, ["roses"])
    with pytest.raises(InvalidArgument, match=r"(?i)none is left to train on"):
        heldout_names(notes, names)
    with pytest.raises(InvalidArgument, match=r"(?i)cannot hold out"):
        heldout_names(notes, len(names))


def test_bad_notes_folders_are_named(tmp_path):
    with pytest.raises(InputFormatError, match=r"(?i)does not exist"):
        read_notes(tmp_path / "missing")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputFormatError, match=r"(?i)holds no notes"):
        read_notes(tmp_path)
    (tmp_path / "a.md").write_text("  \n")
    with pytest.raises(InputFormatError, match=r"(?i)are empty"):
        read_notes(tmp_path)
    (tmp_path / "a.md").write_bytes(b"caf\xe9")
    with pytest.raises(InputFormatError, match=r"(?i)UTF-8"):
        read_notes(tmp_path)


def _independent_perplexity(model, texts: list[str]) -> float:
    """exp(−mean log p) from the module's own logits, one text at a time, BOS as the only context."""
    total, count = 0.0, 0
    for text in texts:
        ids = [model.bos_token_id, *model.tokenizer(text, add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            logits = model.module(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1))
        total += float(logp.sum())
        count += len(ids) - 1
    return math.exp(-total / count)


def test_perplexity_is_exp_of_minus_the_mean_token_logprob(tiny):
    texts = ["the roses were pruned in February.", "one drop of chain oil on each roller", "a"]
    expected = _independent_perplexity(tiny, texts)
    assert notes_perplexity(tiny, texts) == pytest.approx(expected, rel=1e-5)
    # Pooled per token, not a mean of per-text perplexities.
    per_text = [notes_perplexity(tiny, [t]) for t in texts]
    assert notes_perplexity(tiny, texts) != pytest.approx(sum(per_text) / len(per_text), rel=1e-3)


def test_perplexity_refuses_what_it_cannot_score(tiny):
    with pytest.raises(InvalidArgument, match=r"(?i)model controls"):
        notes_perplexity(tiny, ["text"], [Temperature(0.5)])
    for texts in ([], ["ok", "  "], "a string"):
        with pytest.raises(InvalidArgument, match=r"(?i)non-empty texts"):
            notes_perplexity(tiny, texts)


def test_adapter_trained_on_the_rows_lowers_their_perplexity(tiny, tmp_path):
    rows, _ = notes_dataset(example_notes(), model=tiny, heldout=3, max_length=64, out=tmp_path / "all.jsonl")
    assert json.loads((tmp_path / "all.jsonl").read_text().splitlines()[0]) == rows[0]
    rows_path = tmp_path / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in rows[:8]))  # a few rows: a fast test
    config = SFTConfig(
        data=str(rows_path),
        model="tiny-random",
        out=str(tmp_path / "run"),
        lora_rank=4,
        learning_rate=1e-2,
        warmup_steps=1,
        max_steps=6,
        batch_size=8,
        eval_fraction=0.0,
        save_every=100,
    )
    result = train_sft(config, model=tiny)
    texts = [row["text"] for row in rows[:8]]
    before, after = notes_perplexity(tiny, texts), notes_perplexity(tiny, texts, [Adapter(result.adapter)])
    assert after < 0.9 * before, (before, after)
    assert notes_perplexity(tiny, texts) == pytest.approx(before)  # the adapter is off again afterwards


def test_slot_prompt_ends_inside_an_open_quote():
    prompt = slot_prompt('tell me about   the "roses"\nplease')
    assert prompt.endswith('Command: tell me about the roses please\nTopic: "')
    with pytest.raises(InvalidArgument, match=r"(?i)command is empty"):
        slot_prompt(' " ')


COMMANDS_TINY = list(COMMANDS[:6])


def test_quoted_slots_are_spans_of_the_command_by_construction(tiny):
    slots = fill_slot(tiny, COMMANDS_TINY, quote=True, controls=[Temperature(1.5)], seed=3, max_new_tokens=12)
    assert [s.command for s in slots] == COMMANDS_TINY and all(s.quoted for s in slots)
    for slot, command in zip(slots, COMMANDS_TINY, strict=True):
        assert slot.text in command, (slot.text, command)  # exact span, before any normalising
    assert sum(len(s.text) >= 3 for s in slots) >= 3  # not vacuous: the random model did write spans
    assert slot_hallucination_rate(slots, COMMANDS_TINY) == 0.0


def test_free_slots_are_measured_and_the_random_model_makes_them_up(tiny):
    commands = list(COMMANDS[:12])
    slots = fill_slot(tiny, commands, quote=False, seed=3, max_new_tokens=12)
    rate = slot_hallucination_rate(slots, commands)
    made_up = [
        s for s in slots if " ".join(s.text.lower().split()) not in " ".join(s.command.lower().split())
    ]
    assert rate == len(made_up) / len(slots) and rate >= 0.1
    # The random model often closes the quote at once; every slot it did fill is made up.
    assert slot_empty_rate(slots) == pytest.approx(1 - rate)
    quoted = fill_slot(tiny, commands, quote=True, seed=3, max_new_tokens=12)
    assert slot_hallucination_rate(quoted, commands) == 0.0 and slot_empty_rate(quoted) < 1 - rate
    again = fill_slot(tiny, commands[:4], quote=False, seed=3, max_new_tokens=12)
    assert [s.text for s in again] == [s.text for s in slots[:4]]  # same seed, same slots


def test_hallucination_rate_by_hand():
    commands = ["What did I write about the ROSES?", "fix the  bike brakes", "lentil soup"]
    slots = [
        Slot(commands[0], "the roses", True, "stop"),  # case differs: still a span
        Slot(commands[1], "bike brakes", True, "stop"),  # spaces differ: still a span
        Slot(commands[2], "tomato soup", False, "stop"),  # made up
    ]
    assert slot_hallucination_rate(slots, commands) == pytest.approx(1 / 3)
    with pytest.raises(InvalidArgument, match=r"(?i)one command per slot"):
        slot_hallucination_rate(slots, commands[:2])


def test_answer_fills_the_skill_prompt(tiny):
    sample = answer(tiny, "  pruning the\nroses ", seed=0, max_new_tokens=5)
    assert (
        sample.prompt
        == "Summarise what my notes say about pruning the roses.\n\nMy notes on pruning the roses:\n"
    )
    assert sample.prompt == skill_prompt("pruning the roses")
    with pytest.raises(InvalidArgument, match=r"(?i)topic is empty"):
        skill_prompt(" ")


@pytest.mark.slow  # the recipe --quick runs (tests/recipes/test_recipes_quick.py) cover it in the default run
def test_gemma_fills_slots_by_quoting_and_scores_heldout_notes(gemma):
    commands = [COMMANDS[0], COMMANDS[2], COMMANDS[7]]
    quoted = fill_slot(gemma, commands, quote=True, seed=0)
    assert slot_hallucination_rate(quoted, commands) == 0.0
    assert all(slot.closed and slot.text for slot in quoted), quoted
    free = fill_slot(gemma, commands, quote=False, seed=0)
    assert all(slot.closed for slot in free), free  # the few-shot prompt is followed without the pool too
    assert 0.0 <= slot_hallucination_rate(free, commands) <= 1.0
    _, held = notes_dataset(example_notes(), model=gemma, heldout=3)
    assert 2.0 < notes_perplexity(gemma, held) < 200.0  # English notes under an English base model
    summary = answer(gemma, quoted[0].text, seed=0, max_new_tokens=40)
    assert summary.text.strip() and summary.prompt == skill_prompt(quoted[0].text)


def test_example_notes_folder_is_packaged():
    assert (Path(str(example_notes())) / "garden-roses.md").is_file()
