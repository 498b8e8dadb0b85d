"""`classify`: exact full-label probabilities, and the first-token shortcut's bias."""

from __future__ import annotations

import pytest
import torch

from steering.controls import classify, first_token_shortcut
from steering.errors import InvalidArgument


def test_classify_equals_brute_force_scoring(tiny):
    prompt = "Label:"
    labels = [" yes", " no", " maybe so", " sure"]
    result = classify(tiny, prompt, labels)
    brute = torch.stack(
        [tiny.logprobs([prompt], [tiny.encode_continuation(label)])[0].double().sum() for label in labels]
    )
    assert torch.allclose(result.log_scores, brute, atol=1e-5)
    assert torch.allclose(result.probs, brute.softmax(-1), atol=1e-6)
    assert result.probs.sum().item() == pytest.approx(1.0)


def test_prefix_labels_need_an_end(tiny):
    with pytest.raises(InvalidArgument, match="token prefix"):
        classify(tiny, "x:", [" no", " nope"])
    result = classify(tiny, "x:", [" no", " nope"], end="\n")
    assert result.probs.shape == (2,)


@pytest.mark.parametrize(
    ("labels", "message"), [([], "non-empty"), ([" a", " a"], "distinct"), ([" a", ""], "non-empty strings")]
)
def test_bad_labels(tiny, labels, message):
    with pytest.raises(InvalidArgument, match=message):
        classify(tiny, "x:", labels)


@pytest.mark.integration
def test_first_token_shortcut_is_biased_and_classify_is_not(gemma32):
    prompt = "Q: What is the capital of India?\nA:"
    labels = [" New York", " New Delhi", " Mumbai"]
    exact = classify(gemma32, prompt, labels)
    shortcut = first_token_shortcut(gemma32, prompt, labels)
    # The shortcut cannot tell "New York" from "New Delhi": both get P(" New").
    assert shortcut[0].item() == pytest.approx(shortcut[1].item())
    assert exact.best == " New Delhi"
    assert exact.probs[1] > 5 * exact.probs[0]
