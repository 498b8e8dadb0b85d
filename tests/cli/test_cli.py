"""The `steer` command line: output, exit codes, one-paragraph errors, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def steer(*args: str, stdin: str | None = None, home=None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if home is not None:
        env["STEERING_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "steering", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_generate_json_on_tiny():
    result = steer(
        "generate", "--model", "tiny-random", "-p", "hello", "--n", "2", "--max-new-tokens", "5", "--json"
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        assert set(record) >= {"text", "tokens", "logq", "logp_base", "kl", "stop_reason"}
        assert len(record["logq"]) == len(record["tokens"]) == len(record["logp_base"])


def test_generate_reads_stdin_prompt():
    result = steer(
        "generate", "--model", "tiny-random", "--max-new-tokens", "3", "--json", stdin="piped prompt\n"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["prompt"] == "piped prompt"


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": broken}\n')
    result = steer("generate", "--model", "tiny-random", "--input", str(path))
    assert result.returncode == 2
    assert "prompts.jsonl:2" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-p", "hi", "--model", "gemma-207m"], 'Did you mean "gemma-270m"'),
        (["-p", "hi", "--model", "tiny-random", "--temperature", "-1"], "temperature"),
        (["-p", "hi", "--model", "tiny-random", "--top-p", "1.5"], "top-p"),
        (["-p", "hi", "--model", "tiny-random", "--max-new-tokens", "0"], "'--max-new-tokens'"),
        (["-p", "hi", "--model", "tiny-random", "--n", "0"], "'--n'"),
        (["-p", "", "--model", "tiny-random"], "empty"),
        (["-p", "hi", "--model", "tiny-random", "--template", "nope"], "template"),
    ],
)
def test_errors_are_one_paragraph_with_exit_code_2(tmp_path, args, fragment):
    result = steer("generate", *args, home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert fragment.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_debug_shows_traceback():
    result = steer("--debug", "generate", "-p", "hi", "--model", "tiny-random", "--template", "nope")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_models_lists_registry():
    result = steer("models")
    assert result.returncode == 0
    for name in ("gemma-270m", "smollm2-135m-instruct", "tiny-random"):
        assert name[:10] in result.stdout


@pytest.mark.integration
def test_demo_small_run_writes_report(tmp_path):
    # Every section at toy size, the agents' too; the limit guards against a hang, it times nothing.
    result = steer("demo", "--limit", "4", "--max-new-tokens", "16", "--out", str(tmp_path), timeout=1500)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "report.html").read_text()
    assert "<svg" in report and "few-shot" in report and "What is the capital of France?" in report
    assert "Quoting only from a source" in report and "PPLM (bag of words)" in report
    assert "a story that ends with a phrase" in report and "Prompt as reward" in report
    assert "Instruction tuning from the base model itself" in report and "SFT adapter (own demos)" in report
    assert "soft prompt (own demos)" in report and "RL-trained policy" in report
    assert "Feedback: RLHF and RLAIF in small" in report and "smollm2-135m-instruct" in report
    assert "Agents: episodes, one reflection round, one extension" in report and "health_guide" in report
    assert "http://" not in report.replace("http://www.w3.org/2000/svg", "")


def test_choices_bias_and_exact_flags(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# topic\nz\nq\n")
    result = steer(
        "generate", "--model", "tiny-random", "-p", "Label:", "--choices", "yes,no,maybe so",
        "--bias", "z=+2", "--bow", f"{words}:1.5", "--n", "6", "--exact", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 6
    assert {r["text"] for r in records} <= {" yes", " no", " maybe so"}
    assert "ESS" in result.stderr


@pytest.mark.parametrize(
    ("flag", "value"), [("--bias", "Paris"), ("--bow", "words.txt"), ("--bias", "x=nan")]
)
def test_bad_tweak_flags(flag, value):
    result = steer("generate", "--model", "tiny-random", "-p", "hi", flag, value)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_vector_build_then_steer(tmp_path):
    (tmp_path / "pos.txt").write_text("I love this, it is wonderful\nWhat a happy day\n")
    (tmp_path / "neg.txt").write_text("I hate this, it is awful\nWhat a sad day\n")
    out = tmp_path / "happy.safetensors"
    built = steer(
        "vector", "build", "--model", "tiny-random", "--positive", str(tmp_path / "pos.txt"),
        "--negative", str(tmp_path / "neg.txt"), "--layers", "0,1", "--out", str(out),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert out.is_file() and (tmp_path / "happy.safetensors.json").is_file()
    result = steer("generate", "--model", "tiny-random", "-p", "hello", "--steer", f"{out}:3", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["kl"] != 0.0
    missing = steer("generate", "--model", "tiny-random", "-p", "hello", "--steer", "nope.safetensors:2")
    assert missing.returncode == 2 and "steer vector build" in missing.stderr


def test_regex_and_schema_flags(tmp_path):
    result = steer(
        "generate", "--model", "tiny-random", "-p", "x", "--regex", "[ab]{3}", "--n", "3", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert all(len(json.loads(line)["text"]) == 3 for line in result.stdout.splitlines())
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"enum": ["red", "green"]}))
    result = steer("generate", "--model", "tiny-random", "-p", "x", "--json-schema", str(schema), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(json.loads(result.stdout.splitlines()[0])["text"]) in ("red", "green")
    bad = steer("generate", "--model", "tiny-random", "-p", "x", "--regex", "a(b")
    assert bad.returncode == 2 and "unclosed group" in bad.stderr and "Traceback" not in bad.stderr


def test_quote_pplm_and_forced_span_flags(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("the cat sat on the mat")
    words = tmp_path / "words.txt"
    words.write_text("cat\nmat\n")
    spans = tmp_path / "spans.txt"
    spans.write_text("Paris]\nRome]\n")
    result = steer(
        "generate", "--model", "tiny-random", "-p", 'He said "', "--n", "3", "--max-new-tokens", "8",
        "--quote-from", str(source), "--pplm", f"{words}:0.05", "--forced-span", str(spans), "--json",
        "--allow-partial",  # a quote still open at the budget is "unfinished": exit 3 without it
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "PPLM:" in result.stderr and "ms per step" in result.stderr
    from steering.controls import extract_quotes

    for line in result.stdout.splitlines():
        record = json.loads(line)
        quotes = extract_quotes('"' + record["text"])
        closed = quotes if record["stop_reason"] != "unfinished" else quotes[:-1]
        assert all(q in "the cat sat on the mat" for q in closed), record["text"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--quote-from", "missing.txt"], "does not exist"),
        (["--pplm", "missing.txt"], "does not exist"),
        (["--forced-span", "missing.txt"], "does not exist"),
    ],
)
def test_bad_text_control_flags(args, fragment):
    result = steer("generate", "--model", "tiny-random", "-p", "hi", "--max-new-tokens", "2", *args)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_sample_command_infill():
    result = steer(
        "sample", "--model", "tiny-letters", "-p", "ab", "--fixed", "1=c", "--fixed", "3=a",
        "--max-new-tokens", "5", "--particles", "16", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["summary"]["found"] and lines[-1]["summary"]["ess"] > 1
    assert all(line["text"][1] == "c" and line["text"][3] == "a" for line in lines[:-1])


def test_sample_command_json_and_errors(tmp_path):
    result = steer(
        "sample", "--model", "tiny-letters", "-p", "ab", "--ends-with", "b", "--max-new-tokens", "3",
        "--particles", "8", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["found"] and summary["ess"] > 0 and summary["model_calls"] > 0
    assert all(line["text"].endswith("b") and line["weight"] > 0 for line in lines[:-1])
    assert abs(sum(line["weight"] for line in lines[:-1]) - 1.0) < 1e-6

    (tmp_path / "my_rewards.py").write_text(
        "def bad(prompts, completions):\n    return [float('nan')] * len(completions)\n"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "steering", "sample", "--model", "tiny-letters", "-p", "ab", "--reward",
         "my_rewards:bad", "--sampler", "importance", "--max-new-tokens", "2", "--particles", "4"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "reward bad returned a value that is not a finite number" in bad.stderr
    for args, fragment in [
        (["--beta", "0", "--reward", "my_rewards:bad"], "β"),
        ([], "o condition given"),
        (["--ends-with", "b", "--sampler", "magic"], "nknown sampler"),
        (["--fixed", "two=c"], "POSITION=TEXT"),
    ]:
        failed = subprocess.run(
            [sys.executable, "-m", "steering", "sample", "--model", "tiny-letters", "-p", "ab", *args],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert failed.returncode == 2 and fragment in failed.stderr and "Traceback" not in failed.stderr


def test_train_sft_then_generate_with_the_adapter(tmp_path):
    data = tmp_path / "demos.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Q: {i}?\nA:", "completion": " yes"}) + "\n" for i in range(8))
    )
    config = tmp_path / "sft.toml"
    config.write_text(
        f'data = "{data}"\nmodel = "tiny-random"\nlora_rank = 4\nbatch_size = 4\neval_fraction = 0.0\n'
    )
    out = tmp_path / "run"
    result = steer("train", "sft", str(config), f"out={out}", "epochs=2", "learning_rate=0.01")
    assert result.returncode == 0, result.stderr
    assert "done after 4 steps" in result.stdout and (out / "adapter" / "adapter_config.json").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    again = steer("train", "sft", str(config), f"out={out}")
    assert again.returncode == 2 and "already holds a run" in again.stderr
    changed = steer("train", "sft", str(config), f"out={out}", "lora_rank=8", "--resume")
    assert changed.returncode == 2 and "lora_rank" in changed.stderr and "Traceback" not in changed.stderr
    generated = steer(
        "generate", "--model", "tiny-random", "--dtype", "float32", "-p", "Q: 3?\nA:", "--adapter", str(out / "adapter"),
        "--max-new-tokens", "3", "--json",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    record = json.loads(generated.stdout.splitlines()[0])
    assert record["kl"] > 0 and len(record["logp_base"]) == len(record["tokens"])
    shown = steer("report", str(out))
    assert shown.returncode == 0, shown.stderr
    page = (out / "report.html").read_text()
    assert "<svg" in page and "learning rate" in page and "lora_rank" in page
    bad = steer(
        "train", "sft", f"data={data}", "model=tiny-random", "learning_rate=-1", f"out={tmp_path / 'x'}"
    )
    assert bad.returncode == 2 and "earning_rate must be positive" in bad.stderr
