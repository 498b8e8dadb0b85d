"""Corrupt, foreign and mis-encoded files, and silently wrong arguments: each is a clear error.

One case per kind of bad input. Each builds the bad file in tmp_path, runs `steer` in-process through
`steering.cli.main.main` (or calls the Python API), and checks: exit code 2 (or the exception class),
no traceback, a message that names the file or the value received and says how to fix it, and no
file left behind (not even a temporary one).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from steer_runs import run_steer

from steering.cli.control_options import unescape
from steering.controls import SoftPrompt, SteeringVector, build_steering_vector, load_words
from steering.errors import InputFormatError, InvalidArgument, ModelLoadError, SteeringError
from steering.models import load_model
from steering.train import load_examples
from steering.train.adapters import add_lora, remove_adapter, save_adapter

GENERATE = ["generate", "--model", "tiny-random", "--max-new-tokens", "2", "--json"]
NOT_UTF8 = "café".encode("latin-1")  # b"caf\xe9": valid Latin-1, invalid UTF-8


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="session")
def good(tmp_path_factory) -> Path:
    """A real adapter, soft prompt and steering vector for tiny-random, to corrupt copies of."""
    root = tmp_path_factory.mktemp("good")
    model = load_model("tiny-random", dtype="float32")
    add_lora(model, "probe", rank=4, dropout=0.0)
    save_adapter(model, "probe", root / "adapter")
    remove_adapter(model, "probe")
    hidden = model.module.config.hidden_size
    vectors = torch.randn(4, hidden, generator=torch.Generator().manual_seed(0))
    SoftPrompt(vectors, base_model="tiny-random").save(root / "soft")
    vector = build_steering_vector(
        model,
        positive=["I love this day", "What a joy"],
        negative=["I hate this day", "What a mess"],
        layers=[1],
    )
    vector.save(root / "happy.safetensors")
    return root


def copy(good: Path, name: str, tmp_path: Path) -> Path:
    source = good / name
    target = tmp_path / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy(source, target)
        if (good / f"{name}.json").is_file():
            shutil.copy(good / f"{name}.json", tmp_path / f"{name}.json")
    return target


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def random_bytes(path: Path) -> Path:
    path.write_bytes(random.Random(0).randbytes(4096))
    return path


# ---------------------------------------------------------------- the table

Setup = Callable[[Path, Path], list[str]]  # (tmp_path, good) -> CLI args


@dataclass(frozen=True)
class Case:
    name: str
    setup: Setup
    says: tuple[str, ...]  # fragments the message must contain (besides "To fix:")
    stdin: bytes | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _adapter(mutate: Callable[[Path], object], model: str = "tiny-random") -> Setup:
    def setup(tmp_path: Path, good: Path) -> list[str]:
        adapter = copy(good, "adapter", tmp_path)
        mutate(adapter)
        return [*GENERATE, "--model", model, "-p", "hi", "--adapter", str(adapter)]

    return setup


def _foreign_lora(adapter: Path) -> None:
    """An adapter written by peft elsewhere for a model of hidden size 32: no steering.json, a Hub base."""
    (adapter / "steering.json").unlink()
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "some-org/small-model"
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    save_file(
        {k: torch.zeros(v.shape[0], 32) if ".lora_A." in k else v for k, v in tensors.items()},
        str(adapter / "adapter_model.safetensors"),
    )


def _nan_weights(adapter: Path) -> None:
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    save_file(
        {k: torch.full_like(v, float("nan")) for k, v in tensors.items()},
        str(adapter / "adapter_model.safetensors"),
    )


def _pickled_only(adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")


def _soft(mutate: Callable[[Path], object], model: str = "tiny-random") -> Setup:
    def setup(tmp_path: Path, good: Path) -> list[str]:
        soft = copy(good, "soft", tmp_path)
        mutate(soft)
        return [*GENERATE, "--model", model, "-p", "hi", "--adapter", str(soft)]

    return setup


def _vector(mutate: Callable[[Path], object]) -> Setup:
    def setup(tmp_path: Path, good: Path) -> list[str]:
        vector = copy(good, "happy.safetensors", tmp_path)
        mutate(vector)
        return [*GENERATE, "-p", "hi", "--steer", f"{vector}:2"]

    return setup


def _vector_meta(**changes: object) -> Callable[[Path], None]:
    def mutate(vector: Path) -> None:
        meta_path = vector.with_name(vector.name + ".json")
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps({**meta, **changes}))

    return mutate


def _vector_tensors(tensors: dict[str, torch.Tensor], **meta: object) -> Callable[[Path], None]:
    def mutate(vector: Path) -> None:
        save_file(tensors, str(vector))
        _vector_meta(**meta)(vector)

    return mutate


def _file_flag(flag: str, data: bytes, name: str = "file.txt", suffix: str = "") -> Setup:
    def setup(tmp_path: Path, good: Path) -> list[str]:
        path = write(tmp_path / name, data)
        prompt = [] if flag == "--input" else ["-p", "hi"]
        return [*GENERATE, *prompt, flag, f"{path}{suffix}"]

    return setup


def _build(positive: bytes, negative: bytes, out: str = "out/happy.safetensors") -> Setup:
    def setup(tmp_path: Path, good: Path) -> list[str]:
        pos, neg = write(tmp_path / "pos.txt", positive), write(tmp_path / "neg.txt", negative)
        (tmp_path / "out").mkdir()
        return ["vector", "build", "--model", "tiny-random", "--layers", "1",
                "--positive", str(pos), "--negative", str(neg), "--out", str(tmp_path / out)]  # fmt: skip

    return setup


def _args(*args: str) -> Setup:
    return lambda tmp_path, good: list(args)


def _report(out: str) -> Setup:
    def setup(tmp_path: Path, good: Path) -> list[str]:
        run = tmp_path / "run"
        write(run / "metrics.jsonl", '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
        write(run / "config.json", '{"model": "tiny-random"}')
        write(tmp_path / "blocker", "a file where a folder should be")
        return ["report", str(run), "--out", str(tmp_path / out)]

    return setup


CASES = [
    # --- adapters: corrupt files
    Case("adapter-truncated-weights", _adapter(lambda a: truncate(a / "adapter_model.safetensors")),
         ("adapter_model.safetensors", "truncated")),
    Case("adapter-random-bytes", _adapter(lambda a: random_bytes(a / "adapter_model.safetensors")),
         ("adapter_model.safetensors", "not a readable safetensors")),
    Case("adapter-config-not-json", _adapter(lambda a: write(a / "adapter_config.json", "{r: 4,")),
         ("adapter_config.json", "not readable JSON")),
    Case("adapter-config-a-list", _adapter(lambda a: write(a / "adapter_config.json", "[4, 8]")),
         ("adapter_config.json", "JSON object", "a JSON list")),
    Case("adapter-config-not-peft", _adapter(lambda a: write(a / "adapter_config.json", '{"rank": 4}')),
         ("adapter_config.json", "peft_type", "rank")),
    Case("adapter-meta-not-json", _adapter(lambda a: write(a / "steering.json", b"\x00\x01")),
         ("steering.json", "not readable JSON")),
    Case("adapter-nan-weights", _adapter(_nan_weights), ("adapter_model.safetensors", "NaN")),
    Case("adapter-pickled-weights-only", _adapter(_pickled_only),
         ("no adapter_model.safetensors", "adapter_model.bin", "pickled")),
    # --- adapters: foreign
    Case("adapter-other-base-without-steering-json",
         _adapter(lambda a: (a / "steering.json").unlink(), model="tiny-letters"),
         ("trained on 'tiny-random', not on 'tiny-letters'", "--model tiny-random")),
    Case("adapter-foreign-shapes-without-steering-json", _adapter(_foreign_lora),
         ("trained on 'some-org/small-model', not on 'tiny-random'", "in_features=64")),
    Case("adapter-run-dir-instead-of-adapter",
         lambda tmp_path, good: [*GENERATE, "-p", "hi", "--adapter", str(copy(good, "adapter", tmp_path).parent)],
         ("not an adapter directory", "did you mean", "adapter")),
    # --- soft prompts
    Case("soft-prompt-random-bytes", _soft(lambda s: random_bytes(s / "soft_prompt.safetensors")),
         ("soft_prompt.safetensors", "not a readable safetensors")),
    Case("soft-prompt-wrong-tensor",
         _soft(lambda s: save_file({"weight": torch.zeros(3)}, str(s / "soft_prompt.safetensors"))),
         ("soft_prompt.safetensors", "'vectors'", "weight")),
    Case("soft-prompt-meta-not-json", _soft(lambda s: write(s / "soft_prompt.json", "{")),
         ("soft_prompt.json", "not readable JSON")),
    Case("soft-prompt-other-base", _soft(lambda s: None, model="tiny-letters"),
         ("trained on 'tiny-random', not on 'tiny-letters'",)),
    # --- steering vectors
    Case("vector-truncated", _vector(truncate), ("happy.safetensors", "truncated")),
    Case("vector-random-bytes", _vector(random_bytes), ("happy.safetensors", "not a readable safetensors")),
    Case("vector-meta-not-json", _vector(lambda v: write(v.with_name(v.name + ".json"), "model: x")),
         ("happy.safetensors.json", "not readable JSON")),
    Case("vector-meta-missing", _vector(lambda v: v.with_name(v.name + ".json").unlink()),
         ("happy.safetensors.json does not exist", "steer vector build")),
    Case("vector-meta-wrong-shape", _vector(_vector_meta(hidden_size="64", model=None)),
         ("happy.safetensors.json", "'model' must be a string", "'hidden_size' must be a positive integer")),
    Case("vector-wrong-layer-count",
         _vector(_vector_tensors({"layer.7": torch.ones(64)}, layers=[7])),
         ("happy.safetensors", "steers layers [7]", "tiny-random has 2 layers")),
    Case("vector-wrong-hidden-size",
         _vector(_vector_tensors({"layer.1": torch.ones(32)}, hidden_size=32)),
         ("happy.safetensors", "hidden size 32", "tiny-random has 64")),
    Case("vector-tensor-disagrees-with-meta", _vector(_vector_tensors({"layer.1": torch.ones(32)})),
         ("happy.safetensors", "hidden size 64", "(32,)")),
    Case("vector-foreign-safetensors", _vector(_vector_tensors({"weight": torch.ones(64)})),
         ("happy.safetensors", "'weight'", "layer.N")),
    Case("vector-layers-disagree-with-meta", _vector(_vector_meta(layers=[0, 1])),
         ("happy.safetensors", "list different layers")),
    Case("vector-nan", _vector(_vector_tensors({"layer.1": torch.full((64,), float("nan"))})),
         ("happy.safetensors", "NaN")),
    Case("vector-other-model", _vector(_vector_meta(model="tiny-letters")),
         ("built on tiny-letters, not on tiny-random", "--model tiny-random")),
    # --- invalid UTF-8 (and other encodings)
    Case("stdin-jsonl-not-utf8", _args(*GENERATE, "-i", "-"), ("<stdin>:2", "not valid UTF-8", "byte 32"),
         stdin=b'{"prompt": "ok"}\n{"prompt": "' + NOT_UTF8 + b'"}\n'),
    Case("stdin-text-not-utf8", _args(*GENERATE), ("<stdin>:1", "not valid UTF-8", "byte 3"), stdin=NOT_UTF8),
    Case("input-not-utf8", _file_flag("--input", b'{"prompt": "' + NOT_UTF8 + b'"}\n', "in.jsonl"),
         ("in.jsonl:1", "not valid UTF-8", "byte 15", "save")),
    Case("input-utf16", _file_flag("--input", '{"prompt": "hi"}\n'.encode("utf-16"), "in.jsonl"),
         ("in.jsonl:1", "UTF-16")),
    Case("input-lone-surrogate", _file_flag("--input", b'{"prompt": "\\ud800"}\n', "in.jsonl"),
         ("in.jsonl:1", "lone surrogate")),
    Case("input-json-array", _file_flag("--input", b'[{"prompt": "a"},\n {"prompt": "b"}]\n', "in.jsonl"),
         ("in.jsonl:1", "one JSON document", "one object per line")),
    Case("few-shot-not-utf8",
         _file_flag("--few-shot", b'{"prompt": "q", "completion": "' + NOT_UTF8 + b'"}\n', "demos.jsonl"),
         ("demos.jsonl:1", "not valid UTF-8")),
    Case("quote-from-not-utf8", _file_flag("--quote-from", b"ok\n" + NOT_UTF8), ("file.txt:2", "not valid UTF-8")),
    Case("forced-span-not-utf8", _file_flag("--forced-span", NOT_UTF8), ("file.txt:1", "not valid UTF-8")),
    Case("bow-not-utf8", _file_flag("--bow", NOT_UTF8, suffix=":3"), ("file.txt:1", "word list", "UTF-8")),
    Case("pplm-not-utf8", _file_flag("--pplm", NOT_UTF8), ("file.txt:1", "word list", "UTF-8")),
    Case("template-file-not-utf8", _file_flag("--template", NOT_UTF8 + b" {prompt}"), ("file.txt:1", "UTF-8")),
    Case("grammar-file-not-utf8", _file_flag("--grammar", b"start: " + NOT_UTF8), ("file.txt:1", "UTF-8")),
    Case("vector-build-positive-not-utf8", _build(NOT_UTF8, b"sad\n"), ("pos.txt:1", "--positive file", "UTF-8")),
    Case("vector-build-negative-not-utf8", _build(b"glad\n", b"sad\n" + NOT_UTF8), ("neg.txt:2", "--negative")),
    Case("prompt-undecodable-argv", _args(*GENERATE, "-p", "caf\udce9"), ("--prompt", "undecodable")),
    # --- silently wrong arguments
    Case("choices-empty-label", _args(*GENERATE, "-p", "hi", "--choices", "yes,,no"),
         ("--choices has an empty label", "'yes,,no'", "extra comma")),
    Case("choices-trailing-comma", _args(*GENERATE, "-p", "hi", "--choices", "yes,no,"),
         ("item 3 of 3", "'yes,no,'")),
    Case("choices-empty", _args(*GENERATE, "-p", "hi", "--choices", ""), ("empty label", "''")),
    Case("choices-duplicate", _args(*GENERATE, "-p", "hi", "--choices", "yes, no,yes "),
         ("same label more than once", "['yes']")),
    Case("classify-empty-label", _args("classify", "--model", "tiny-random", "-p", "x", "--labels", ",a,b"),
         ("--labels has an empty label", "item 1", "',a,b'")),
    Case("classify-duplicate", _args("classify", "--model", "tiny-random", "-p", "x", "--labels", "a,b, a"),
         ("--labels lists the same label", "['a']")),
    Case("bias-twice", _args(*GENERATE, "-p", "hi", "--bias", "cat=2", "--bias", "cat=-2"),
         ("'cat' twice", "cat=2", "once")),
    Case("bias-word-without-tokens", _args(*GENERATE, "--model", "tiny-letters", "-p", "ab", "--bias", "xyz=4"),
         ("'xyz' has no tokens",)),
    Case("classify-label-not-spellable", _args("classify", "--model", "tiny-letters", "-p", "ab", "--labels", "a,xa"),
         ("cannot spell", "' xa'")),
    Case("train-config-not-utf8",
         lambda tmp_path, good: ["train", "sft", str(write(tmp_path / "run.toml", b"epochs = 1\n# caf\xe9\n"))],
         ("run.toml:2", "config file", "not valid UTF-8")),
    Case("choices-label-not-spellable", _args(*GENERATE, "--model", "tiny-letters", "-p", "ab", "--choices", "a,xa"),
         ("cannot spell", "' xa'")),
    Case("pplm-words-not-spellable",
         lambda tmp_path, good: [*GENERATE, "--model", "tiny-letters", "-p", "ab", "--pplm",
                                 str(write(tmp_path / "words.txt", "xyz\n"))],
         ("none of PPLM's words", "xyz")),
    Case("bow-only-blank-lines", _file_flag("--bow", b"\n  \n# comment\n", suffix=":3"), ("file.txt", "no words")),
    Case("forced-span-only-blank-lines", _file_flag("--forced-span", b"\n \n"), ("file.txt", "no spans")),
    Case("vector-build-identical-sets", _build(b"glad\nsad\n", b"sad\nglad\n"), ("the same texts",)),
    Case("vector-build-zero-difference", _build(b"glad\nglad\n", b"glad\n"), ("nearly) the same activations", "layer 1")),
    # --- outputs that would be half-written
    Case("vector-build-out-is-a-directory", _build(b"glad\n", b"sad\n", out="out"),
         ("out is a directory", "vector.safetensors")),
    Case("vector-build-out-under-a-file", _build(b"glad\n", b"sad\n", out="pos.txt/v.safetensors"),
         ("could not create the steering vector's folder", "pos.txt")),
    Case("report-out-under-a-file", _report("blocker/report.html"), ("could not write the report", "blocker")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_a_clear_error(case: Case, good, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = case.setup(tmp_path, good)
    before = files_under(tmp_path)
    code, out, err = run_steer(monkeypatch, capsys, args, stdin=case.stdin)
    assert code == 2, (code, err)
    assert "Traceback" not in err + out
    text = " ".join(err.split())  # one paragraph, however the terminal wrapped it
    assert text.count("error:") == 1, text  # after the progress bar, if one was drawn
    message = text.split("error:")[1]
    assert "To fix:" in message, message
    for fragment in case.says:
        assert fragment.lower() in message.lower(), (fragment, message)
    assert files_under(tmp_path) == before, "a file was left behind"


def test_the_good_files_load(good, tmp_path, monkeypatch, capsys):
    """The uncorrupted originals work, so each case above fails for the damage it was given."""
    monkeypatch.chdir(tmp_path)
    words = write(tmp_path / "w.txt", "\ufeffcat\n".encode())  # a UTF-8 BOM is fine
    for extra in (
        ["--adapter", str(good / "adapter")],
        ["--adapter", str(good / "soft")],
        ["--steer", f"{good / 'happy.safetensors'}:2"],
        ["--steer", f"{good / 'happy.safetensors.json'}:2"],  # the metadata file names the vector too
        ["--choices", "yes, no", "--max-new-tokens", "8"],
        ["--bow", f"{words}:2"],
    ):
        code, out, err = run_steer(monkeypatch, capsys, [*GENERATE, "-p", "hi", *extra])
        assert code == 0, (extra, err)
        assert json.loads(out.splitlines()[0])["prompt"] == "hi"
    assert files_under(tmp_path) == {"w.txt"}


def test_vector_build_writes_two_files_and_no_temporaries(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pos.txt", "I love this day\nWhat a joy\n")
    write(tmp_path / "neg.txt", "I hate this day\nWhat a mess\n")
    args = ["vector", "build", "--model", "tiny-random", "--layers", "0,1", "--positive", "pos.txt",
            "--negative", "neg.txt", "--out", "vectors/happy.safetensors"]  # fmt: skip
    code, _, err = run_steer(monkeypatch, capsys, args)
    assert code == 0, err
    assert files_under(tmp_path) == {
        "pos.txt", "neg.txt", "vectors", "vectors/happy.safetensors", "vectors/happy.safetensors.json",
    }  # fmt: skip
    loaded = SteeringVector.load(tmp_path / "vectors/happy.safetensors")
    assert sorted(loaded.vectors) == [0, 1] and loaded.model_name == "tiny-random"


def test_report_out_directory_writes_report_html_inside(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = _report("pages")(tmp_path, Path())
    (tmp_path / "pages").mkdir()
    code, _, err = run_steer(monkeypatch, capsys, args)
    assert code == 0, err
    assert (tmp_path / "pages" / "report.html").is_file()
    assert [p.name for p in (tmp_path / "pages").iterdir()] == ["report.html"]


# ---------------------------------------------------------------- the Python API


def _vector_model():
    return load_model("tiny-random")


def _demos(tmp_path: Path, data: bytes) -> Callable[[], object]:
    path = write(tmp_path / "demos.jsonl", data)
    return lambda: load_examples(path, "demonstrations")


def _save_vector(tmp_path: Path, target: Path) -> Callable[[], object]:
    return lambda: SteeringVector({0: torch.ones(64)}, "tiny-random", 64).save(target)


# (name, setup(tmp_path) -> the call to make, the error class, fragments of its message)
API_CASES = [
    ("training-data-not-utf8",
     lambda t: _demos(t, b'{"prompt": "a", "completion": "b"}\n{"prompt": "' + NOT_UTF8 + b'"}\n'),
     InputFormatError, ("demos.jsonl:2", "not valid UTF-8", "byte 50", "save")),
    ("training-data-lone-surrogate",
     lambda t: _demos(t, b'{"prompt": "a", "completion": "\\udc00"}\n'),
     InputFormatError, ("demos.jsonl:1", "lone surrogate")),
    ("training-data-is-a-directory", lambda t: lambda: load_examples(t, "demonstrations"),
     InputFormatError, ("is a directory", "not a directory")),
    ("vector-positive-is-a-string",
     lambda t: lambda: build_steering_vector(_vector_model(), positive="happy", negative=["sad"], layers=[0]),
     InvalidArgument, ("positive examples must be a list", "'happy'")),
    ("vector-empty-example",
     lambda t: lambda: build_steering_vector(_vector_model(), positive=["a", " "], negative=["b"], layers=[0]),
     InvalidArgument, ("non-empty strings",)),
    ("vector-save-to-directory", lambda t: _save_vector(t, t),
     InvalidArgument, ("is a directory", "vector.safetensors")),
    ("vector-save-meta-path-is-a-directory",
     lambda t: (t / "v.safetensors.json").mkdir() or _save_vector(t, t / "v.safetensors"),
     InvalidArgument, ("v.safetensors.json is a directory",)),
    ("soft-prompt-not-a-directory", lambda t: lambda: SoftPrompt.load(t / "nothing"),
     InvalidArgument, ("is not a soft prompt",)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "error", "says"), [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES]
)
def test_bad_api_input_raises_the_library_error(setup, error, says, tmp_path):
    call = setup(tmp_path)
    before = files_under(tmp_path)
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert isinstance(raised.value, SteeringError) and "To fix:" in message
    for fragment in says:
        assert fragment in message, (fragment, message)
    assert files_under(tmp_path) == before


def test_loading_errors_are_model_load_errors(good, tmp_path):
    """Corrupt model files raise ModelLoadError (the class the API documents), not a library's own error."""
    vector = copy(good, "happy.safetensors", tmp_path)
    random_bytes(vector)
    with pytest.raises(ModelLoadError):
        SteeringVector.load(vector)
    soft = copy(good, "soft", tmp_path)
    truncate(soft / "soft_prompt.safetensors")
    with pytest.raises(ModelLoadError):
        SoftPrompt.load(soft)


def test_words_and_escapes_keep_their_text(tmp_path):
    """A UTF-8 BOM is not part of the first word; --end keeps non-ASCII text (unicode_escape made 'é' 'Ã©')."""
    assert load_words(str(write(tmp_path / "w.txt", "\ufeffhappy\njoy\n".encode()))) == ["happy", "joy"]
    assert unescape("é\\n") == "é\n"
    assert unescape("a\\tb\\\\n\\x41\\u00e9") == "a\tb\\nAé"
    assert unescape("C:\\path") == "C:\\path"  # an unknown escape stays as typed
