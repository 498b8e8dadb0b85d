"""KL-regularised RL: the policy is base + LoRA, rollouts go through `steering.generate`.

Objective: maximise E_q[r(x)] − β·KL(q ‖ π), whose optimum is the target π(x)·exp(r(x)/β)/Z — RLHF
read as variational inference (Korbak, Perez & Buckley 2022, "RL with KL penalties is better viewed
as Bayesian inference"). Each optimizer step:

1. rollouts: `samples_per_prompt` completions of each of `batch_size` prompts from the current
   policy, through the decode engine (so context controls and pools may shape them); the policy is
   a model control (the adapter on), so every sample carries exact base books (adapter off): per-token
   log q and log π;
2. rewards from any callable `(prompts, completions) -> list[float]` (a function, a trained
   `RewardModel`, a `condition/` potential wrapped as one), or a soft token-id potential such as
   `fixed_tokens(spans, strength=λ)` (λ per fixed position matched: the prompt as a reward); the KL enters the reward per sequence,
   r − β·Σ_t (log q − log π) (the k1 estimator of KL(q ‖ π) for that sample, exact books);
3. advantages: leave-one-out baseline within each prompt's group (RLOO; `normalise=true` divides by
   the group's standard deviation, as GRPO);
4. loss: −mean(A · log q_θ(x)) with log q_θ recomputed with gradients (REINFORCE; one update per
   batch of rollouts, so no importance ratio is needed); with `ptx_coef = γ`, plus γ × SFT's loss on
   a few demonstrations (InstructGPT's PPO-ptx, `ptx_backward`).

With `rollout_workers = K` step 1 runs on K Ray actors (`rollouts.py`): the same rollouts, sampled
elsewhere; steps 2–4 stay here.

Metrics per step: reward, KL (k1 and k3 estimators, per sequence), the regularised return, loss,
generation and training seconds apart, rollout tokens/s; with a list of rewards (their weighted sum,
`rewards.RewardSum`) each one's mean as `reward/<name>`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from steering.callables import load_callable
from steering.controls.base import split_controls
from steering.decode import Samples, generate
from steering.errors import InvalidArgument
from steering.models import LanguageModel, load_model
from steering.rewards import (
    NAMED_REWARDS,
    RewardFn,
    RewardSum,
    TokenPotential,
    check_beta,
    checked_rewards,
    load_reward,
)
from steering.train.batching import (
    Encoded,
    check_empty_penalty,
    demonstrations_backward,
    encode_demonstrations,
    micro_batches,
    sequence_logprobs,
)
from steering.train.data import load_examples
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.losses import IGNORE, group_advantages, kl_k1, kl_k3
from steering.train.method import Method
from steering.train.reward_model import RewardModel
from steering.train.rollouts import Policy, RolloutWorkers


@dataclass
class RLConfig(TrainConfig):
    """The shared fields, plus: `data` is a JSONL of {"prompt"} rows; `reward` names the reward."""

    out: str = "runs/rl"
    learning_rate: float = 1e-4
    # module:function, reward-model:DIR, or a name (vader, instructions); a list of them is their sum,
    # weighed by `reward_weights` (default all 1). Ignored when a callable is passed.
    reward: str | list[str] = ""
    reward_weights: list[float] = field(default_factory=list)
    beta: float = 0.1
    samples_per_prompt: int = 4
    max_new_tokens: int = 32
    normalise: bool = False
    # Rollouts per forward + backward of the update (0: all of a step's at once). The same gradient either
    # way; on gemma-270m, 32 rollouts of ~47 tokens held +4.7 GB in one forward, +1.8 GB in chunks of 8, as fast.
    micro_batch_size: int = 8
    # Subtracted from the reward of an empty rollout (end-of-text first, or only whitespace): a rule-based
    # term beside a learned reward that saw few empty replies and may score them well (RL then learns
    # to say nothing; the instruct recipe measured it). 0: none.
    empty_penalty: float = 0.0
    # The pretraining mix of InstructGPT's PPO-ptx (Ouyang et al. 2022, eq. 2), here on demonstrations:
    # each step adds ptx_coef × SFT's loss on `ptx_batch_size` rows of `ptx_data` (a demonstrations
    # JSONL, e.g. the SFT step's), with SFT's empty-reply unlikelihood at `ptx_empty_penalty`. It holds
    # on to what SFT taught where the reward model is blind (the instruct recipe: RL alone made greedy
    # replies to held-out summary requests empty). 0: plain RL.
    ptx_data: str = ""
    ptx_coef: float = 0.0
    ptx_batch_size: int = 8
    ptx_empty_penalty: float = 0.0
    # Rollouts on this many Ray actors (train/rollouts.py; the `ray` extra), each holding the base and
    # the policy's LoRA, the weights sent every step. 0: rollouts in this process.
    rollout_workers: int = 0
    eval_fraction: float = 0.0
    lora_dropout: float = 0.0  # sampling runs without dropout: train the same function

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_fraction:
            raise InvalidArgument(
                "RL has no eval split (its metric is the reward of fresh rollouts, logged every step)",
                received=self.eval_fraction,
                fix="set eval_fraction=0",
            )
        self.beta = check_beta(self.beta)
        check_reward_weights(self.reward, self.reward_weights)
        if not isinstance(self.samples_per_prompt, int) or self.samples_per_prompt < 2:
            raise InvalidArgument(
                "samples_per_prompt must be at least 2 (the baseline of a sample is the others' mean)",
                received=self.samples_per_prompt,
                fix="use e.g. samples_per_prompt=4",
            )
        if not isinstance(self.micro_batch_size, int) or self.micro_batch_size < 0:
            raise InvalidArgument(
                "micro_batch_size must be a whole number ≥ 0 (0: all of a step's rollouts in one forward)",
                received=self.micro_batch_size,
                fix="use e.g. micro_batch_size=8 to hold less memory in the update",
            )
        if not 0 <= self.empty_penalty < float("inf"):
            raise InvalidArgument(
                "empty_penalty must be a finite number ≥ 0",
                received=self.empty_penalty,
                fix="use 0 or e.g. 2.0",
            )
        if self.max_new_tokens <= 0:
            raise InvalidArgument(
                "max_new_tokens must be positive", received=self.max_new_tokens, fix="use 32"
            )
        if not 0 <= self.ptx_coef < float("inf"):
            raise InvalidArgument(
                "ptx_coef must be a finite number ≥ 0", received=self.ptx_coef, fix="use 0 or e.g. 1.0"
            )
        if self.ptx_coef and not self.ptx_data:
            raise InvalidArgument(
                "ptx_coef mixes SFT's loss on demonstrations into RL, but no ptx_data names them",
                received=f"ptx_coef={self.ptx_coef}, ptx_data empty",
                fix="set ptx_data=demos.jsonl (the SFT data), or ptx_coef=0",
            )
        if self.ptx_data and not self.ptx_coef:
            raise InvalidArgument(
                "ptx_data is set but ptx_coef is 0, so the demonstrations would never be used",
                received=f"ptx_data={self.ptx_data}",
                fix="set ptx_coef (e.g. 1.0), or drop ptx_data",
            )
        if not isinstance(self.ptx_batch_size, int) or self.ptx_batch_size < 1:
            raise InvalidArgument(
                "ptx_batch_size must be a whole number ≥ 1", received=self.ptx_batch_size, fix="use e.g. 8"
            )
        check_empty_penalty(self.ptx_empty_penalty)
        if self.rollout_workers < 0:
            raise InvalidArgument(
                "rollout_workers must be ≥ 0",
                received=self.rollout_workers,
                fix="use 0 (in process) or e.g. 2",
            )


def check_reward_weights(reward: str | list[str], weights: list[float]) -> None:
    """The weights are none (all 1) or one finite number per reward of the list.

    Raises:
        InvalidArgument: an empty list of rewards, or a count of weights that does not fit it.
    """
    count = len(reward) if isinstance(reward, list) else 1
    if isinstance(reward, list) and not reward:
        raise InvalidArgument(
            "reward is an empty list",
            received=reward,
            fix='name at least one, e.g. reward = ["instructions"]',
        )
    if weights and len(weights) != count:
        raise InvalidArgument(
            f"reward_weights gives {len(weights)} weights for {count} reward(s)",
            received={"reward": reward, "reward_weights": weights},
            fix="give one weight per reward of the list, or none (all 1)",
        )


def resolve_rewards(
    spec: str | list[str], weights: Sequence[float], model: LanguageModel, *, dtype: str = "float32"
) -> RewardFn:
    """One reward (`resolve_reward`), or a list of them as a `RewardSum` (weights default to 1); each
    part is named for the metrics (`reward/<name>`): the named reward's name, `reward_model`, or the
    function's name."""
    if isinstance(spec, str) and not weights:
        return resolve_reward(spec, model, dtype=dtype)
    specs = [spec] if isinstance(spec, str) else list(spec)
    parts: list[tuple[str, RewardFn, float]] = []
    for i, one in enumerate(specs):
        name = "reward_model" if one.startswith("reward-model:") else one.rpartition(":")[2]
        if any(name == taken for taken, _, _ in parts):
            name = f"{name}_{i}"
        parts.append((name, resolve_reward(one, model, dtype=dtype), weights[i] if weights else 1.0))
    return RewardSum(parts)


def resolve_reward(spec: str, model: LanguageModel, *, dtype: str = "float32") -> RewardFn:
    """`vader` (or another name of `rewards.NAMED_REWARDS`), `reward-model:DIR` or `module:function`.

    A reward model is loaded on its own copy of the model (`model.name`, in `dtype`): the policy's
    copy carries the adapter being trained, and switching peft adapters on it would freeze that one.

    Raises:
        InvalidArgument: `spec` is none of these forms.
    """
    if spec in NAMED_REWARDS:
        return load_reward(spec)
    if spec.startswith("reward-model:"):
        return RewardModel(load_model(model.name, dtype=dtype), spec.removeprefix("reward-model:"))
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise InvalidArgument(
            f"reward must be {', '.join(NAMED_REWARDS)}, reward-model:DIR or module:function (or a list of them)",
            received=spec or "nothing",
            fix="set e.g. reward=vader or reward=my_rewards:positive",
        )
    return load_callable(spec, "reward")  # type: ignore[return-value]


class RL(Method):
    """The KL-regularised RL method for the shared loop (rows are prompts)."""

    name = "rl"

    def __init__(
        self, reward: RewardFn | TokenPotential | None = None, controls: Sequence[object] = ()
    ) -> None:
        _, logit, model_controls = split_controls(controls)
        if logit or model_controls:
            raise InvalidArgument(
                "RL rollouts take context controls only (the gradient uses the policy's own log q)",
                received=[type(c).__name__ for c in [*logit, *model_controls]],
                fix="pass templates, Q:/A: or few-shot controls; pools and tweaks are not trained through yet",
            )
        self.reward = reward
        self.controls = list(controls)
        self.demonstrations: list[Encoded] = []  # the ptx mix's rows, shuffled once
        self.workers: RolloutWorkers | None = None  # rollout_workers > 0: started at the first step

    def close(self) -> None:
        """Stop the rollout workers (and the Ray cluster they started), if any."""
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    def load(self, config: RLConfig) -> list[str]:
        return load_examples(config.data, "prompts")

    def encode(self, model: LanguageModel, examples: list[str], config: RLConfig) -> list[str]:
        if self.reward is None:
            self.reward = resolve_rewards(config.reward, config.reward_weights, model, dtype=config.dtype)
        if isinstance(self.reward, RewardModel) and self.reward.model is model:
            raise InvalidArgument(
                "the reward model runs on the model being trained: attaching its adapter would freeze the policy's",
                received=repr(self.reward.__name__),
                fix='load the reward model on its own copy: RewardModel(load_model(name, dtype="float32"), DIR)',
            )
        if isinstance(
            self.reward, TokenPotential
        ):  # a token-id potential, e.g. fixed_tokens(spans, strength=λ)
            if self.reward.hard:
                raise InvalidArgument(
                    "a hard condition is not a reward: its log potential is 0 or −inf",
                    received=repr(self.reward),
                    fix="give it a strength (e.g. fixed_tokens(spans, strength=4.0)), or sample it with condition/",
                )
            self.reward = self.reward.bind(model.tokenizer)
        if config.ptx_coef and not self.demonstrations:
            rows = encode_demonstrations(
                model, load_examples(config.ptx_data, "demonstrations"), config.max_length
            )
            random.Random(config.seed).shuffle(rows)
            self.demonstrations = rows
        return examples

    def backward(
        self, model: LanguageModel, rows: list[str], config: RLConfig, *, step: int
    ) -> dict[str, Any]:
        assert self.reward is not None
        module = model.module
        started = time.perf_counter()
        sampling: dict[str, Any] = {
            "n": config.samples_per_prompt,
            "max_new_tokens": config.max_new_tokens,
            "seed": config.seed * 1_000_003 + step,
            "batch_size": config.batch_size * config.samples_per_prompt,
        }
        if config.rollout_workers:
            samples = self.remote_rollouts(model, rows, config, sampling)
        else:
            module.eval()
            module.disable_adapters()
            try:
                samples = generate(model, rows, controls=[*self.controls, Policy(self.name)], **sampling)
            finally:
                module.enable_adapters()
                module.train()
        generation_s = time.perf_counter() - started
        rewards = torch.tensor(_rewards(self.reward, samples), dtype=torch.float32)
        empty = torch.tensor([not s.text.strip() for s in samples], dtype=torch.float32)
        rewards = rewards - config.empty_penalty * empty
        k1 = torch.tensor([float(kl_k1(s.logq, s.logp_base).sum()) for s in samples])
        k3 = torch.tensor([float(kl_k3(s.logq, s.logp_base).sum()) for s in samples])
        returns = rewards - config.beta * k1
        advantages = group_advantages(returns.view(len(rows), -1), normalise=config.normalise).view(-1)
        started = time.perf_counter()
        total = 0.0
        items = list(range(len(samples)))
        for chunk in micro_batches(items, config.micro_batch_size or len(items)):
            logq = _policy_logprobs(model, [samples[i] for i in chunk])
            loss = -(advantages[chunk] * logq).sum() / len(samples)
            loss.backward()
            total += float(loss.detach())
        extra = self.ptx_backward(model, config, step) if config.ptx_coef else {}
        if isinstance(self.reward, RewardSum):  # each part's mean, unweighted
            extra |= {f"reward/{name}": mean for name, mean in self.reward.last_means.items()}
        tokens = sum(len(s.token_ids) for s in samples)
        return extra | {
            "loss": total,
            "reward": float(rewards.mean()),
            "kl": float(k1.mean()),
            "kl_k3": float(k3.mean()),
            "empty": float(empty.mean()),
            "return": float(returns.mean()),
            "tokens": tokens,
            "generation_s": generation_s,
            "sampling_s": samples.stats.decode_s,  # the decoding loop alone (generation_s also scores)
            "training_s": time.perf_counter() - started,
            "rollout_tokens_per_s": tokens / generation_s,
        }

    def remote_rollouts(
        self, model: LanguageModel, rows: list[str], config: RLConfig, sampling: dict[str, Any]
    ) -> Samples:
        """The step's rollouts from the Ray workers (started at the first step), in prompt order."""
        if self.workers is None:
            lora = {"rank": config.lora_rank, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
                    "target_modules": config.target_modules}  # fmt: skip
            self.workers = RolloutWorkers(
                config.rollout_workers, model=config.model, dtype=config.dtype,
                init_adapter=config.init_adapter, lora=lora, name=self.name,
            )  # fmt: skip
        return self.workers.sample(model, self.name, rows, controls=self.controls, **sampling)

    def ptx_backward(self, model: LanguageModel, config: RLConfig, step: int) -> dict[str, Any]:
        """Add ptx_coef × SFT's loss on this step's demonstrations (the next `ptx_batch_size` of the
        shuffled set, wrapping round: fixed by the step, so a resumed run trains the same rows)."""
        rows = self.demonstrations
        start = step * config.ptx_batch_size
        chosen = [rows[(start + i) % len(rows)] for i in range(min(config.ptx_batch_size, len(rows)))]
        record = demonstrations_backward(
            model,
            chosen,
            batch_size=config.micro_batch_size or len(chosen),
            empty_penalty=config.ptx_empty_penalty,
            scale=config.ptx_coef,
        )
        out = {"ptx_loss": record["loss"]}
        if "p_empty" in record:
            out["ptx_p_empty"] = record["p_empty"]
        return out

    def evaluate(self, model: LanguageModel, rows: list[str], config: RLConfig) -> dict[str, Any]:
        return {"eval_loss": 0.0}


def _rewards(reward: RewardFn | TokenPotential, samples: Samples) -> list[float]:
    """One reward per sample: a token-id potential scores the token ids, any other reward the texts."""
    prompts = [s.prompt for s in samples]
    if isinstance(reward, TokenPotential):
        by_ids = reward.log_potential_ids
        return checked_rewards(
            lambda _prompts, _texts: by_ids([s.token_ids for s in samples]),
            prompts,
            samples.texts,
            name=repr(reward),
        )
    return checked_rewards(reward, prompts, samples.texts, name="the RL reward")


def _policy_logprobs(model: LanguageModel, samples: list[Any]) -> torch.Tensor:
    """(N,) log q_θ of each sampled completion under the policy, with gradients (teacher forced)."""
    rows = []
    for sample in samples:
        prompt = model.encode(sample.context)
        rows.append(Encoded(prompt + list(sample.token_ids), [IGNORE] * len(prompt) + list(sample.token_ids)))
    return sequence_logprobs(model, rows)


def train_rl(
    config: RLConfig,
    *,
    reward: RewardFn | TokenPotential | None = None,
    controls: Sequence[object] = (),
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """KL-regularised RL (see the module docstring); `reward` overrides `config.reward`.

    `controls` shape the rollouts (context controls, pools); the policy's KL is always to the base
    model on the raw prompt, from the decode books.
    """
    method = RL(reward, controls)
    try:
        return run_training(
            config, method, resume=resume, model=model, progress=progress, stop_after=stop_after
        )
    finally:
        method.close()
