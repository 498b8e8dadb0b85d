"""Bad command lines, one case per kind: each ends with a message and an exit code, never a traceback,
and leaves no file behind.

Usage errors (unknown command or option, a value of the wrong type or out of range, a missing option or
argument) get typer's own usage message and exit 2; errors of ours (a model or file that does not exist,
a file where a directory is expected, …) one paragraph with what was received and how to fix it, exit 2.
Most cases run in-process through `steering.cli.main.main` (fast); a few run the installed `steer`.
Ctrl-C during `steer generate` (a real SIGINT to a real process) exits 130 after writing whole lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steering.cli.main import main
from steering.errors import ModelNotFound

STEER = Path(sys.executable).with_name("steer")
TINY = ["--model", "tiny-random"]
GEN = ["generate", "-p", "Once upon a time", *TINY, "--max-new-tokens", "3"]


def plain(text: str) -> str:
    """Rich's panel borders and colour codes removed, whitespace collapsed (messages wrap at 80 columns)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.sub(r"[│╭╮╰╯─]", " ", text)
    return " ".join(text.split())


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def run(monkeypatch, capsys, tmp_path):
    """Run `steer ARGS…` in-process in an empty working directory; (exit code, stdout, stderr)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("STEERING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "100")

    def steer(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["steer", *args])
        with pytest.raises(SystemExit) as done:
            main()
        code = done.value.code
        captured = capsys.readouterr()
        assert files_in(work) == [], "nothing may be left in the working directory"
        return (code if isinstance(code, int) else 0 if code is None else 1), captured.out, captured.err

    return steer


# --- usage errors: typer's message, exit 2 -------------------------------------------------------

AT_LEAST = "Input should be greater than or equal to"
# fmt: off
USAGE_ERRORS = [
    ("unknown-command", ["frobnicate"], "No such command 'frobnicate'"),
    ("unknown-command-close", ["generat"], "Did you mean 'generate'"),
    ("unknown-option", [*GEN, "--frob"], "No such option: --frob"),
    ("unknown-option-close", [*GEN, "--temprature", "1"], "Possible options: --temperature"),
    ("not-an-integer", [*GEN, "--n", "two"], "'--n': Input should be a valid integer"),
    ("not-a-number", [*GEN, "--temperature", "hot"], "'--temperature': Input should be a valid number"),
    ("missing-option-value", ["generate", *TINY, "-p"], "Option '-p' requires an argument"),
    ("missing-required-option", ["classify", "-p", "hi", *TINY], "Missing option '--labels'"),
    ("missing-argument", ["report"], "Missing argument 'run'"),
    ("extra-argument", [*GEN, "surplus"], "Got unexpected extra argument(s) (surplus)"),
    ("unknown-training-method", ["train", "foo"], "No such command 'foo'"),
    ("unknown-vector-command", ["vector", "destroy"], "No such command 'destroy'"),
    ("zero-samples", [*GEN, "--n", "0"], f"Invalid value for '--n': {AT_LEAST} 1"),
    ("negative-samples", [*GEN, "--n", "-3"], f"'--n': {AT_LEAST} 1"),
    ("zero-budget", [*GEN, "--max-new-tokens", "0"], f"'--max-new-tokens': {AT_LEAST} 1"),
    ("negative-temperature", [*GEN, "--temperature", "-1"], f"'--temperature': {AT_LEAST} 0"),
    ("zero-top-k", [*GEN, "--top-k", "0"], f"'--top-k': {AT_LEAST} 1"),
    ("negative-seed", [*GEN, "--seed", "-1"], f"'--seed': {AT_LEAST} 0"),
    ("huge-seed", [*GEN, "--seed", str(2**64)], "'--seed': Input should be less than or equal to 9223372036854775807"),
    ("zero-particles", ["sample", "-p", "hi", *TINY, "--particles", "0"], f"'--particles' / '--n-particles': {AT_LEAST} 1"),
    ("zero-sampler-budget", ["sample", "-p", "hi", *TINY, "--budget", "0"], f"'--budget' / '--max-model-calls': {AT_LEAST} 1"),
    ("negative-show", ["sample", "-p", "hi", *TINY, "--show", "-1"], f"'--show': {AT_LEAST} 0"),
    ("zero-demo-limit", ["demo", *TINY, "--limit", "0"], f"'--limit': {AT_LEAST} 1"),
]
# fmt: on


@pytest.mark.parametrize(("argv", "error"), [pytest.param(a, e, id=i) for i, a, e in USAGE_ERRORS])
def test_usage_errors_print_the_usage_and_exit_2(run, argv, error):
    code, out, err = run(*argv)
    text = plain(err)
    assert code == 2, err
    assert "Traceback" not in out + err
    assert out == ""
    if "requires an argument" not in error:  # click knows no command yet there, so shows no usage line
        assert text.startswith("Usage: steer"), text
        assert "Try 'steer" in text and "--help' for help." in text
    assert error in text, text


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "shows"),
    [
        pytest.param([], 2, "Commands", id="no-arguments"),
        pytest.param(["train"], 2, "sft", id="train-without-method"),
        pytest.param(["vector"], 2, "build", id="vector-without-command"),
        pytest.param(["--help"], 0, "Commands", id="help"),
        pytest.param(["generate", "--help"], 0, "--max-new-tokens", id="command-help"),
        pytest.param(["train", "sft", "--help"], 0, "--resume", id="method-help"),
    ],
)
def test_help_is_shown_without_a_traceback(run, argv, code, shows):
    got, out, err = run(*argv)
    assert got == code
    assert "Traceback" not in out + err
    assert "Usage: steer" in plain(out + err) and shows in out + err


# --- our errors: one paragraph with what was received and how to fix it, exit 2 ------------------


# {missing}: a path that does not exist; {folder}: a directory; {file}: a one-line text file.
OUR_ERRORS = [
    ("unknown-model", ["generate", "-p", "hi", "--model", "nope-model"], "unknown model name", "nope-model"),
    ("model-path-missing", ["generate", "-p", "hi", "--model", "./none.gguf"], "does not exist", "none.gguf"),
    ("model-dir-not-hf", ["generate", "-p", "hi", "--model", "{folder}"], "no config.json", "a-folder"),
    ("unknown-dtype", [*GEN, "--dtype", "float8"], "unknown dtype", "'float8'"),
    ("unknown-sampler", ["sample", "-p", "hi", *TINY, "--ends-with", "x", "--sampler", "smcc"], "unknown sampler", "smcc"),
    ("few-shot-missing", [*GEN, "--few-shot", "{missing}"], "does not exist", "missing.txt"),
    ("few-shot-directory", [*GEN, "--few-shot", "{folder}"], "is a directory", "a-folder"),
    ("json-schema-missing", [*GEN, "--json-schema", "{missing}"], "does not exist", "missing.txt"),
    ("json-schema-directory", [*GEN, "--json-schema", "{folder}"], "is a directory", "a-folder"),
    ("grammar-missing", [*GEN, "--grammar", "{missing}"], "does not exist", "missing.txt"),
    ("quote-from-directory", [*GEN, "--quote-from", "{folder}"], "is a directory", "a-folder"),
    ("forced-span-missing", [*GEN, "--forced-span", "{missing}"], "does not exist", "missing.txt"),
    ("bow-missing", [*GEN, "--bow", "{missing}:3"], "does not exist", "missing.txt"),
    ("bow-no-strength", [*GEN, "--bow", "{file}"], "--bow takes FILE:STRENGTH", "words.txt"),
    ("steer-vector-missing", [*GEN, "--steer", "{missing}:2"], "does not exist", "missing.txt"),
    ("adapter-missing", [*GEN, "--adapter", "{missing}"], "does not exist", "missing.txt"),
    ("adapter-is-a-file", [*GEN, "--adapter", "{file}"], "not an adapter directory", "words.txt"),
    ("input-missing", ["generate", *TINY, "--input", "{missing}"], "does not exist", "missing.txt"),
    ("template-missing", [*GEN, "--template", "{missing}"], "template", "missing.txt"),
    ("vector-positive-missing", ["vector", "build", "--positive", "{missing}", "--negative", "{missing}",
                                 "--out", "{folder}/v.safetensors", *TINY], "does not exist", "missing.txt"),
    ("report-run-missing", ["report", "{missing}"], "has no metrics.jsonl", "missing.txt"),
    ("train-config-missing", ["train", "sft", "{missing}"], "does not exist", "missing.txt"),
    ("train-unknown-key", ["train", "sft", "data=x.jsonl", "epochz=3"], "epochz", "epochz"),
    ("demo-out-is-a-file", ["demo", *TINY, "--out", "{file}"], "is a file", "words.txt"),
    ("pplm-step-not-a-number", [*GEN, "--pplm", "{file}:abc"], "'abc' is not a number", "words.txt:abc"),
    ("model-not-gguf", ["generate", "-p", "hi", "--model", "{file}"], "words.txt is not a GGUF file", "b'happ'"),
]  # fmt: skip


@pytest.fixture
def paths(tmp_path):
    """The values of the placeholders in OUR_ERRORS, outside the working directory."""
    files = tmp_path / "files"
    (files / "a-folder").mkdir(parents=True)
    (files / "words.txt").write_text("happy\n")
    return {"missing": files / "missing.txt", "folder": files / "a-folder", "file": files / "words.txt"}


@pytest.mark.parametrize(
    ("argv", "what", "received"), [pytest.param(a, w, r, id=i) for i, a, w, r in OUR_ERRORS]
)
def test_our_errors_say_what_was_received_and_how_to_fix_it(run, paths, argv, what, received):
    code, out, err = run(*[arg.format(**paths) for arg in argv])
    text = plain(err)
    assert code == 2, err
    assert "Traceback" not in out + err
    assert "error:" in text, text
    assert what.lower() in text.lower(), text
    received_part = text[text.index("Received:") :] if "Received:" in text else ""
    assert received in received_part, text
    assert "To fix:" in text, text


def test_debug_shows_the_traceback_of_our_error(run):
    with pytest.raises(ModelNotFound):  # raised as it is, for the traceback
        run("--debug", *GEN, "--model", "nope-model")


def test_debug_does_not_turn_usage_errors_into_tracebacks(run):
    code, _, err = run("--debug", "generate", "--frob")
    assert code == 2 and "Traceback" not in err and "No such option" in err


# --- the installed command, in a real process ----------------------------------------------------


def _steer(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STEERING_HOME": str(cwd / ".home")}
    return subprocess.run(
        [str(STEER), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600, check=False
    )


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        pytest.param(["frobnicate"], 2, "No such command 'frobnicate'", id="usage"),
        pytest.param(["generate", "-p", "hi", "--model", "nope-model"], 2, "Received: nope-model", id="ours"),
    ],
)
def test_the_installed_steer_command(tmp_path, argv, code, fragment):
    result = _steer(*argv, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in plain(result.stderr)
    assert files_in(tmp_path) in ([], [".home"]) and not any((tmp_path / ".home").rglob("*.tmp*"))


# --- Ctrl-C during steer generate ---------------------------------------------------------------


def test_ctrl_c_during_generate_keeps_the_finished_lines(tmp_path):
    """A real SIGINT once the first line is out: exit 130, whole JSON lines only, the count on stderr."""
    total = 96
    argv = [str(STEER), "generate", *TINY, "-p", "Once upon a time", "--n", str(total)]
    argv += ["--max-new-tokens", "60", "--json", "--seed", "7"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STEERING_HOME": str(tmp_path / ".home")}
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # blocks until the first sample is written
    assert first.endswith("\n"), "the first line arrives while generation goes on (streamed)"
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=600)
    lines = [first, *rest.splitlines(keepends=True)]
    assert process.returncode == 130, err
    assert "Traceback" not in err
    records = [json.loads(line) for line in lines]  # every line whole
    assert all(line.endswith("\n") for line in lines)
    assert 1 <= len(records) < total
    assert f"interrupted: {len(records)} of {total} samples written" in plain(err), err
    keys = [(r["prompt_index"], r["sample_index"]) for r in records]
    assert keys == sorted(set(keys))
    assert [p.name for p in tmp_path.iterdir() if p.name != ".home"] == []

    # The lines written are the uninterrupted run's samples (same seed, same rows).
    from steering import generate, load_model

    model = load_model("tiny-random")
    full = generate(model, "Once upon a time", n=max(k for _, k in keys) + 1, max_new_tokens=60, seed=7)
    by_index = {s.sample_index: s for s in full}
    for record in records:
        assert record["tokens"] == by_index[record["sample_index"]].token_ids
