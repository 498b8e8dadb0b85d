"""QuoteFromSource: quotes are substrings of the source; masks equal brute force; books stay exact."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from steering.controls import QuoteFromSource, SuffixAutomaton, extract_quotes
from steering.controls.quote import FAIL, OUTSIDE, token_bytes
from steering.decode import generate
from steering.errors import InvalidArgument

SOURCE = "the cat sat on the mat; the dog ate the hat."


def test_suffix_automaton_recognises_exactly_the_substrings():
    rng = random.Random(0)
    for _ in range(20):
        data = bytes(rng.choice(b"abc") for _ in range(rng.randint(1, 12)))
        automaton = SuffixAutomaton(data)
        for length in range(0, 5):
            for word in itertools.product(b"abc", repeat=length):
                assert automaton.contains(bytes(word)) == (bytes(word) in data), (data, word)


def test_extract_quotes():
    assert extract_quotes('a "b c" d "e') == ["b c", "e"]
    assert extract_quotes("no quotes") == []


def _brute_force_allowed(control, state, vocab):
    tokens = control._tokens
    allowed = []
    for token in range(vocab):
        text = tokens[token] if token < len(tokens) else None
        ok = state == OUTSIDE if text is None else control.advance(state, text) != FAIL
        allowed.append(ok)
    return torch.tensor(allowed)


def _mask_of(control, state, vocab):
    control._states = [state]
    control._prompt_width = 1
    scores = torch.zeros(1, vocab)
    return control(torch.zeros(1, 1, dtype=torch.long), scores)[0] > float("-inf")


@pytest.mark.parametrize("model_name", ["tiny", "gemma"])
def test_masks_equal_brute_force(model_name, request):
    model = request.getfixturevalue(model_name)
    control = QuoteFromSource(SOURCE)
    control.start(tokenizer=model.tokenizer, prompt_width=1, batch_size=1)
    automaton = control._automaton
    states = [OUTSIDE, 0, automaton.walk(0, b"the "), automaton.walk(0, b"at"), automaton.walk(0, b"hat.")]
    assert FAIL not in states
    for state in states:
        expected = _brute_force_allowed(control, state, model.vocab_size)
        assert torch.equal(_mask_of(control, state, model.vocab_size), expected), state
    # Inside a quote the mask is a real restriction; outside it is almost everything.
    assert _mask_of(control, 0, model.vocab_size).sum() < 0.5 * model.vocab_size
    assert _mask_of(control, OUTSIDE, model.vocab_size).sum() > 0.5 * model.vocab_size


def test_samples_quote_only_from_source_and_weights_are_the_kept_mass(tiny):
    prompt = 'He said "'
    control = QuoteFromSource(SOURCE)
    samples = generate(tiny, [prompt], controls=[control], n=24, max_new_tokens=16, seed=0)
    valid = [s for s in samples if s.stop_reason != "unfinished"]
    assert valid, "some samples should close their quote"
    for sample in samples:
        text = '"' + sample.text  # the prompt opened the first quote
        quotes = extract_quotes(text)
        complete = quotes if sample.stop_reason != "unfinished" else quotes[:-1]
        for quote in complete:
            assert quote and quote in SOURCE, (quote, sample.text)
        if sample.stop_reason == "unfinished":
            assert text.count('"') % 2 == 1  # ended inside a quote
    # The first step's weight is exactly the log of the mass the mask kept.
    ids = torch.tensor([tiny.encode(prompt)])
    logp = tiny.module(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    fresh = QuoteFromSource(SOURCE)
    fresh.start(tokenizer=tiny.tokenizer, prompt_width=1, batch_size=1)
    allowed = fresh.allowed_inside(0)
    log_z = torch.logsumexp(logp[allowed], 0)
    first = samples[0]
    assert (first.logp_base[0] - first.logq[0]).item() == pytest.approx(log_z.item(), abs=1e-5)


def test_prompt_state(tiny):
    control = QuoteFromSource(SOURCE)
    control.start(tokenizer=tiny.tokenizer, prompt_width=1, batch_size=1)
    automaton = control._automaton
    assert control.prompt_state(tiny.encode('a "b" c')) == OUTSIDE
    assert control.prompt_state(tiny.encode('He said "')) == 0
    assert control.prompt_state(tiny.encode('He said "the c')) == automaton.walk(0, b"the c")
    with pytest.raises(InvalidArgument, match="does not occur in the source"):
        control.prompt_state(tiny.encode('He said "zebra'))


def test_text_ending_inside_a_quote_is_unfinished(tiny):
    samples = generate(tiny, ['He said "'], controls=[QuoteFromSource(SOURCE)], n=8, max_new_tokens=2, seed=1)
    for sample in samples:
        if sample.text.count('"') == 0:
            assert sample.stop_reason == "unfinished"


@pytest.mark.integration
def test_gemma_quotes_are_substrings_of_the_source(gemma):
    source = (
        "The committee approved the new budget on Tuesday. Spending on schools will rise by four percent, "
        "while the road repair fund stays the same. The mayor called it a careful plan for a hard year."
    )
    prompt = f'Article: {source}\n\nSummary with a quote from the article: The mayor said "'
    samples = generate(
        gemma, [prompt], controls=[QuoteFromSource(source)], n=8, max_new_tokens=40, seed=0, batch_size=8
    )
    closed = 0
    for sample in samples:
        quotes = extract_quotes('"' + sample.text)
        checked = quotes if sample.stop_reason != "unfinished" else quotes[:-1]
        for quote in checked:
            assert quote in source, (quote, sample.text)
        closed += len(checked)
    assert closed >= 4, samples.texts  # most samples close the quote within 40 tokens


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source": ""}, "source text to quote from is empty"),
        ({"source": "   "}, "source text to quote from is empty"),
        ({"source": "abc", "open_mark": "«»"}, "one ASCII character"),
        ({"source": "abc", "close_mark": "”"}, "one ASCII character"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(InvalidArgument, match="(?i)" + match):
        QuoteFromSource(**kwargs)


def test_token_bytes_marks_special_tokens(tiny):
    tokens = token_bytes(tiny.tokenizer)
    for special in tiny.tokenizer.all_special_ids:
        assert tokens[special] is None
    assert tokens[tiny.encode_continuation("a")[0]] == b"a"
