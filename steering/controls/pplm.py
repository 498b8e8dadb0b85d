"""PPLM (Dathathri et al., 2020): gradient steps on the past key/values toward an attribute model.

At every step, with the bag-of-words attribute model p(a | x) = Σ_{w ∈ bag} p(w | x):

1. take the past keys/values (every position before the last token) and a perturbation ΔH;
2. for `iterations` rounds: run the last token with past + ΔH, compute the loss
   −log Σ_{w∈bag} p̃(w) + kl_scale · KL(p̃ ‖ p) (p̃ perturbed, p unperturbed next-token
   distribution), and move ΔH by −step_size · ∇ / ‖∇‖^γ (per layer, the original normalisation);
3. the perturbed distribution is fused with the unperturbed one: log q ∝ gm_scale · log p̃ +
   (1 − gm_scale) · log p.

Differences from the reference code, on purpose: the engine's KV cache stays unperturbed (so the base
books come from the same forward pass, exactly, with no rescoring), and ΔH is carried to the next
step (warm start, zero for the new position) instead of being baked into the cache — the same
accumulation of the steering signal over time. `stats` records the extra forward/backward passes and
the seconds they took, so the cost per token can be reported.

The defaults are the paper's bag-of-words settings (step size 0.03, 3 iterations, kl_scale 0.01,
gm_scale 0.95, γ = 1.5).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from steering.controls.base import DecodeState, LogitControlBase
from steering.controls.tweak import word_first_tokens
from steering.errors import InvalidArgument

_SMALL = 1e-15


@dataclass
class PPLMStats:
    """Work PPLM did: steps, gradient iterations (each one forward + backward) and their time."""

    steps: int = 0
    iterations: int = 0
    seconds: float = 0.0


def _positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidArgument(
            f"{name} must be a finite number", received=value, fix=f"use the default {name}"
        )
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(
            f"{name} must be {'non-negative' if allow_zero else 'positive'}",
            received=value,
            fix=f"use the default {name}",
        )
    return float(value)


@dataclass
class PPLM(LogitControlBase):
    """Plug-and-play steering toward a bag of words by gradient steps on the KV cache.

    Args:
        words: the attribute's bag of words (their first tokens, with and without a leading space).
        step_size: α, the size of each normalised gradient step.
        iterations: gradient steps per generated token (each costs one forward and one backward).
        kl_scale: weight of KL(p̃ ‖ p) in the loss, keeping the perturbed distribution close.
        gm_scale: fusion weight γ_gm of the perturbed distribution (1 = perturbed only).
        gamma: exponent of the gradient-norm normalisation.
        window: perturb only the last `window` positions of the past (0 = all of them).
    """

    words: Sequence[str]
    step_size: float = 0.03
    iterations: int = 3
    kl_scale: float = 0.01
    gm_scale: float = 0.95
    gamma: float = 1.5
    window: int = 0
    stats: PPLMStats = field(default_factory=PPLMStats, init=False, repr=False)
    # Its perturbation and recorded past are per batch, not per row: no refill, no resampling.
    can_restart_row = False
    can_select_rows = False
    _bag: torch.Tensor | None = field(default=None, init=False, repr=False)
    _tokenizer_id: int | None = field(default=None, init=False, repr=False)
    _state: Any = field(default=None, init=False, repr=False)
    _delta: list[torch.Tensor] | None = field(default=None, init=False, repr=False)
    _past: list[Any] = field(default_factory=list, init=False, repr=False)
    _recorded: list[Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.words, str) or not self.words or any(not str(w).strip() for w in self.words):
            raise InvalidArgument(
                "PPLM needs a non-empty list of non-empty words",
                received=self.words,
                fix='pass e.g. ["happy"]',
            )
        _positive(self.step_size, "step_size", allow_zero=True)
        _positive(self.kl_scale, "kl_scale", allow_zero=True)
        _positive(self.gamma, "gamma", allow_zero=True)
        if not 0.0 <= _positive(self.gm_scale, "gm_scale", allow_zero=True) <= 1.0:
            raise InvalidArgument("gm_scale must be in [0, 1]", received=self.gm_scale, fix="use 0.95")
        for name in ("iterations", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(f"{name} must be a non-negative integer", received=value, fix="use 3")

    def __repr__(self) -> str:
        return (
            f"PPLM({len(self.words)} words, step_size={self.step_size}, iterations={self.iterations}, "
            f"kl_scale={self.kl_scale}, gm_scale={self.gm_scale})"
        )

    # -- engine hooks ----------------------------------------------------------------------------

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        if self._tokenizer_id != id(tokenizer):
            ids = sorted({t for word in self.words for t in word_first_tokens(tokenizer, str(word))})
            if not ids:
                raise InvalidArgument(
                    "none of PPLM's words can be spelled by this model's tokenizer, so it would steer nowhere",
                    received=list(self.words)[:10],
                    fix="use words in this model's vocabulary",
                )
            self._bag = torch.tensor(ids, dtype=torch.long)
            self._tokenizer_id = id(tokenizer)
        self._delta = None
        self._recorded = None

    def observe_state(self, state: DecodeState) -> None:
        """Keep the cache as it was before the last token (the past PPLM perturbs) and record this one.

        Cache layers replace their tensors on every update (concatenation, window slicing), so shallow
        copies of the layers taken at the previous step are exactly the past without the last token.
        """
        self._state = state
        self._past = self._recorded if self._recorded is not None else self._prefill(state)
        self._recorded = [copy.copy(layer) for layer in state.cache.layers]

    def _prefill(self, state: DecodeState) -> list[Any]:
        """First step of a batch: the past is the prompt without its last token; run it once."""
        mask = state.attention_mask[:, :-1]
        with torch.no_grad():
            out = state.model.module(
                input_ids=state.input_ids[:, :-1],
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=True,
                logits_to_keep=1,
            )
        return list(out.past_key_values.layers)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._state is None or self._bag is None:
            raise InvalidArgument(
                "PPLM runs the model itself and needs the decode engine's state",
                received="a call outside steering.generate",
                fix="pass PPLM in controls= of steering.generate",
            )
        began = time.perf_counter()
        perturbed = self._perturbed_logprobs(scores)
        self.stats.steps += 1
        self.stats.seconds += time.perf_counter() - began
        fused = self.gm_scale * perturbed + (1.0 - self.gm_scale) * scores
        return fused.nan_to_num(nan=float("-inf"))

    # -- the method ------------------------------------------------------------------------------

    def _forward(self, delta: list[torch.Tensor]) -> torch.Tensor:
        """Log-probabilities of the next token with past + delta (differentiable in delta)."""
        from transformers import DynamicCache

        state = self._state
        layers = []
        for index, recorded in enumerate(self._past):
            layer = copy.copy(recorded)
            layer.keys = (recorded.keys.float() + delta[2 * index]).to(recorded.keys.dtype)
            layer.values = (recorded.values.float() + delta[2 * index + 1]).to(recorded.values.dtype)
            layers.append(layer)
        cache = DynamicCache(config=state.model.module.config)
        cache.layers = layers
        out = state.model.module(
            input_ids=state.last_tokens,
            attention_mask=state.attention_mask,
            position_ids=state.last_positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float().log_softmax(-1)

    def _perturbed_logprobs(self, unperturbed: torch.Tensor) -> torch.Tensor:
        delta = self._warm_start()
        windows = [self._window_mask(d) for d in delta]
        bag = self._bag.to(unperturbed.device)  # type: ignore[union-attr]
        base_probs = unperturbed.exp()
        with torch.enable_grad():
            for _ in range(self.iterations):
                leaves = [d.detach().requires_grad_(True) for d in delta]
                logp = self._forward(leaves)
                probs = logp.exp()
                bow_loss = -torch.logsumexp(logp[:, bag], dim=-1).sum()
                corrected = probs + _SMALL * (probs <= _SMALL)
                kl = (corrected * (corrected / (base_probs + _SMALL)).log()).sum()
                loss = bow_loss + self.kl_scale * kl
                grads = [g * w for g, w in zip(torch.autograd.grad(loss, leaves), windows, strict=True)]
                delta = self._step(leaves, grads)
                self.stats.iterations += 1
        self._delta = delta
        with torch.no_grad():
            return self._forward(delta)

    def _step(self, delta: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """ΔH ← ΔH − α · ∇ / ‖∇‖^γ, the norm taken per row over each layer's keys and values."""
        moved = []
        for index in range(0, len(delta), 2):
            keys, values = grads[index], grads[index + 1]
            norm = (keys.flatten(1).square().sum(1) + values.flatten(1).square().sum(1)).sqrt() + _SMALL
            scale = (self.step_size / norm**self.gamma).view(-1, *([1] * (keys.dim() - 1)))
            moved.append(delta[index].detach() - scale * keys)
            moved.append(delta[index + 1].detach() - scale * values)
        return moved

    def _window_mask(self, delta: torch.Tensor) -> torch.Tensor:
        """(L, 1): 1 on the positions that may be perturbed (the last `window`, or all)."""
        length = delta.shape[-2]
        mask = torch.ones(length, 1, device=delta.device)
        if self.window and self.window < length:
            mask[: length - self.window] = 0.0
        return mask

    def _warm_start(self) -> list[torch.Tensor]:
        """Last step's perturbation, aligned by position: zero for the newest past position; a sliding
        window layer that dropped its oldest position drops that position's perturbation too."""
        shapes = [t.shape for layer in self._past for t in (layer.keys, layer.values)]
        device = self._past[0].keys.device
        fresh = [torch.zeros(s, dtype=torch.float32, device=device) for s in shapes]
        previous = self._delta
        if previous is None or previous[0].shape[0] != shapes[0][0]:
            return fresh
        for new, old in zip(fresh, previous, strict=True):
            overlap = min(old.shape[-2], new.shape[-2] - 1)
            if overlap > 0:
                new[..., new.shape[-2] - 1 - overlap : new.shape[-2] - 1, :] = old[
                    ..., old.shape[-2] - overlap :, :
                ]
        return fresh
