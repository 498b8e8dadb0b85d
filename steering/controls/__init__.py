"""Controls reshape the base distribution: context controls change the input, model controls the
model, logit controls the scores.

`steering.controls.base` states the contract every control follows (the hooks the decode engine
calls, their defaults, the capabilities a control declares) and the order in which controls compose.
Every control exported here runs through the conformance suite (`tests/controls/test_conformance.py`).
"""

from steering.controls.adapter import Adapter, MixedAdapters
from steering.controls.base import (
    CallableControl,
    Constraint,
    ContextControl,
    Control,
    DecodeState,
    FastPaths,
    LogitControl,
    LogitControlBase,
    ModelControl,
    RowState,
    StateObserver,
    as_logit_control,
    current_rows,
    describe,
    forward_rows,
    split_controls,
)
from steering.controls.classify import Classification, classify, first_token_shortcut
from steering.controls.context import (
    QA,
    ChatTemplate,
    Demonstration,
    FewShot,
    Instruction,
    PromptTemplate,
    demonstrations,
    load_demonstrations,
    template_from_name,
)
from steering.controls.grammar import Grammar, JsonSchema, Lark, Regex
from steering.controls.pool import Choices, ForcedSpan, ForceTokens
from steering.controls.pplm import PPLM, PPLMStats
from steering.controls.quote import QuoteFromSource, SuffixAutomaton, extract_quotes
from steering.controls.sampling import Greedy, MinP, Temperature, TopK, TopP, sampling_controls
from steering.controls.soft_prompt import SoftPrompt
from steering.controls.steer_vector import (
    SteeringVector,
    build_steering_vector,
    check_vector_path,
    decoder_layers,
)
from steering.controls.tweak import BagOfWords, LogitBias, load_words, word_first_tokens

__all__ = [
    "PPLM",
    "QA",
    "Adapter",
    "BagOfWords",
    "CallableControl",
    "ChatTemplate",
    "Choices",
    "Classification",
    "Constraint",
    "ContextControl",
    "Control",
    "DecodeState",
    "Demonstration",
    "FastPaths",
    "FewShot",
    "ForceTokens",
    "ForcedSpan",
    "Grammar",
    "Greedy",
    "Instruction",
    "JsonSchema",
    "Lark",
    "LogitBias",
    "LogitControl",
    "LogitControlBase",
    "MinP",
    "MixedAdapters",
    "ModelControl",
    "PPLMStats",
    "PromptTemplate",
    "QuoteFromSource",
    "Regex",
    "RowState",
    "SoftPrompt",
    "StateObserver",
    "SteeringVector",
    "SuffixAutomaton",
    "Temperature",
    "TopK",
    "TopP",
    "as_logit_control",
    "build_steering_vector",
    "check_vector_path",
    "classify",
    "current_rows",
    "decoder_layers",
    "demonstrations",
    "describe",
    "extract_quotes",
    "first_token_shortcut",
    "forward_rows",
    "load_demonstrations",
    "load_words",
    "sampling_controls",
    "split_controls",
    "template_from_name",
    "word_first_tokens",
]
