"""Context controls: templates, Q:/A:, few-shot, chat, instruction prefixes."""

from __future__ import annotations

import json

import pytest

from steering.controls import (
    QA,
    ChatTemplate,
    FewShot,
    Greedy,
    Instruction,
    PromptTemplate,
    demonstrations,
    load_demonstrations,
    template_from_name,
)
from steering.decode import generate
from steering.errors import InputFormatError, TemplateError


def test_prompt_template_fields():
    template = PromptTemplate("Translate to {language}: {prompt}\n", fields={"language": "French"})
    assert template.render("cat") == "Translate to French: cat\n"


def test_missing_field_is_named():
    with pytest.raises(TemplateError, match=r"\{language\}"):
        PromptTemplate("Translate to {language}: {prompt}")


def test_unknown_field_is_named_with_suggestion():
    with pytest.raises(TemplateError, match="languag") as info:
        PromptTemplate("Translate to {language}: {prompt}", fields={"language": "x", "languag": "y"})
    assert 'Did you mean "language"' in str(info.value)


def test_template_without_prompt_field():
    with pytest.raises(TemplateError, match=r"\{prompt\}"):
        PromptTemplate("no field here")


def test_qa_wrapper():
    qa = QA()
    assert qa.render("What is 2+2?") == "Q: What is 2+2?\nA:"
    assert qa.stop == ("\nQ:",)


def test_few_shot_fixed_and_shuffled():
    demos = demonstrations([("a?", "A."), ("b?", "B."), ("c?", "C.")])
    fixed = FewShot(demos).render("d?")
    assert fixed == "Q: a?\nA: A.\n\nQ: b?\nA: B.\n\nQ: c?\nA: C.\n\nQ: d?\nA:"
    shuffled = FewShot(demos, shuffle_seed=3).render("d?")
    assert shuffled == FewShot(demos, shuffle_seed=3).render("d?")
    assert sorted(shuffled.split("\n\n")[:3]) == sorted(fixed.split("\n\n")[:3])
    assert FewShot(demos).stop == ("\n\nQ:", "\nQ:")


def test_few_shot_from_jsonl_names_bad_line(tmp_path):
    good = tmp_path / "demos.jsonl"
    good.write_text(json.dumps({"prompt": "a?", "completion": "A."}) + "\n")
    assert load_demonstrations(good)[0].completion == "A."
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a?", "completion": "A."}) + "\n{not json\n")
    with pytest.raises(InputFormatError, match=r"bad\.jsonl:2"):
        load_demonstrations(bad)
    with pytest.raises(Exception, match="at least one"):
        FewShot(())


def test_instruction_prefix():
    assert Instruction("Answer briefly.").render("Why?") == "Answer briefly.\n\nWhy?"


def test_chat_template_needs_one(tiny):
    with pytest.raises(TemplateError, match="no chat template"):
        ChatTemplate().render("hi", tokenizer=tiny.tokenizer)


def test_template_from_name(tmp_path):
    assert template_from_name("qa").render("x") == "Q: x\nA:"
    path = tmp_path / "t.txt"
    path.write_text("Question: {prompt}\nAnswer:")
    assert template_from_name(str(path)).render("x") == "Question: x\nAnswer:"
    with pytest.raises(TemplateError, match='Did you mean "qa"'):
        template_from_name("qaa")


def test_context_controls_compose_in_order(tiny):
    samples = generate(tiny, ["hi"], controls=[QA(), Instruction("Be brief.")], max_new_tokens=2)
    assert samples[0].context == "Be brief.\n\nQ: hi\nA:"


@pytest.mark.integration
def test_smollm2_answers_with_its_chat_template(smollm):
    samples = generate(
        smollm,
        ["What is the capital of France?"],
        controls=[ChatTemplate(), Greedy()],
        max_new_tokens=24,
    )
    assert "paris" in samples[0].text.lower()
    assert samples[0].stop_reason == "eos"
