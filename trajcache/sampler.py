"""The masked-diffusion sampler with in-step capture (DESIGN §4-5): token ids in, numpy tables out.

One denoising step (forward, float32 log-softmax, captures, selection, commit) is one function,
compiled whole with `torch.compile(fullgraph=True, dynamic=False)` or run eagerly: the same code
either way. Shapes are padded to buckets (batch to `batch_size`, prompt to a multiple of 16, label
roles to a multiple of 8) so a run builds few graphs. Knows nothing of metrics, stores or datasets.
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from .config import CaptureConfig, SamplerConfig
from .errors import ConfigError, DataError, ModelError
from .models import DiffusionModel
from .selection import confidence, entropy, propose, select, step_schedule

_PROMPT_BUCKET = 16  # prompt columns are padded to a multiple of this: one graph per bucket
_ROLE_BUCKET = 8  # label roles likewise: one bucket covers every TOFU split (answer, paraphrase, 5 perturbed)
_INT16_MAX = np.iinfo(np.int16).max  # fixation and commits are stored as int16
# Graphs one Sampler may build (one per prompt bucket x role bucket; prompts up to ~1000 tokens).
# With fullgraph=True, dynamo's default limit of 8 is a hard failure, not a fallback.
_GRAPH_LIMIT = 64

Tables = dict[str, np.ndarray]
Captures = dict[str, torch.Tensor]
StepFn = Callable[..., tuple[torch.Tensor, torch.Tensor, Captures]]


@dataclass(frozen=True)
class _Batch:
    """One padded batch on the model's device; rows past `items` are dummies."""

    canvas: torch.Tensor  # (Bp, P + L) int64: left-padded prompt, then L mask tokens
    attention: torch.Tensor  # (Bp, P + L) bool: False on left padding
    labels: torch.Tensor  # (Bp, Jp, L) int64, -1 = no label
    targets: torch.Tensor  # (Bp, L) int64, guided-mode tokens (EOS where the target role ends)
    seeds: torch.Tensor  # (Bp,) int64
    items: int  # B
    roles: int  # J
    prompt_len: NDArray[np.int32]  # (B,)


class Sampler:
    """LLaDA-style masked-diffusion sampling of batches of prompts, capturing per-step tables."""

    def __init__(
        self,
        model: DiffusionModel,
        config: SamplerConfig,
        capture: CaptureConfig,
        *,
        compile: bool = True,
        batch_size: int = 8,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1; got {batch_size}")
        if max(config.steps, config.gen_length) > _INT16_MAX:
            raise ConfigError(f"--steps and --gen-length must be <= {_INT16_MAX} (stored as int16)")
        if capture.top_k > model.vocab_size:
            raise ConfigError(f"--top-k {capture.top_k} exceeds the vocabulary ({model.vocab_size}); lower it")
        if model.network.training:
            raise ModelError(f"{model.source}: network is in training mode (dropout); call .eval() first")
        self.model = model
        self.config = config
        self.capture = capture
        self.batch_size = batch_size
        self._schedule = torch.as_tensor(step_schedule(config), device=model.device)  # (S,)
        self._steps = [torch.tensor(t, device=model.device) for t in range(config.steps)]
        self._step: StepFn = _compiled(self._denoise_step, model.device) if compile else self._denoise_step

    def run(
        self,
        prompts: Sequence[Sequence[int]],
        labels: np.ndarray,
        seeds: np.ndarray,
        targets: np.ndarray | None = None,
    ) -> Tables:
        """Sample B <= batch_size items; returns the tables of DESIGN §5, first axis B.

        prompts: B lists of token ids; labels (B, J, L) int, -1 = none, aligned at generated
        position 0; seeds (B,) int64 per item; targets (B, L) int, guided mode only (-1 -> EOS).
        """
        batch = self._batch(prompts, labels, seeds, targets)
        with torch.no_grad():
            tokens, fixation, captures = self._denoise(batch)
        return self._tables(batch, tokens, fixation, captures)

    # -- one step: traced whole by torch.compile -------------------------------------------------

    def _denoise_step(
        self,
        canvas: torch.Tensor,
        attention: torch.Tensor,
        fixation: torch.Tensor,
        step: torch.Tensor,
        seeds: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, Captures]:
        """Canvas (B, T) and fixation (B, L) before step `step` (0-d) -> after it, plus captures."""
        cfg = self.config
        L = cfg.gen_length
        logp = self._log_probs(canvas, attention)  # (B, L, V) float32
        argmax = logp.argmax(-1)  # (B, L)
        x0 = propose(logp, cfg.temperature, seeds, step)  # (B, L)
        ent = entropy(logp)  # (B, L)
        conf = confidence(cfg.remasking, logp, x0, ent, seeds, step)  # (B, L)
        # Only uncommitted positions of the current block; earlier blocks are already full.
        # "Uncommitted" is fixation < 0, not canvas == mask_id: a committed token stays committed
        # even when it is the mask id itself (LLaDA would re-select it; here the schedule is exact).
        block_end = (step // (cfg.steps // cfg.blocks) + 1) * cfg.block_length
        eligible = (fixation < 0) & (torch.arange(L, device=canvas.device) < block_end)  # (B, L)
        commit = select(conf, eligible, self._schedule.index_select(0, step.reshape(1)))  # (B, L)
        token = targets if cfg.mode == "guided" else x0
        generated = torch.where(commit, token, canvas[:, -L:])  # (B, L)
        canvas = torch.cat([canvas[:, :-L], generated], dim=1)  # (B, T)
        fixation = torch.where(commit, step, fixation)
        return canvas, fixation, self._captures(logp, argmax, x0, ent, labels)

    def _log_probs(self, canvas: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Float32 log-probs (B, L, V) of the generated region, after LLaDA's unsupervised CFG."""
        L, scale = self.config.gen_length, self.config.cfg_scale
        if scale == 0:
            return self.model.forward_logits(canvas, attention, L).float().log_softmax(-1)
        # Unconditional copy: real prompt tokens replaced by the mask id (LLaDA generate.py).
        columns = torch.arange(canvas.shape[1], device=canvas.device)
        prompt = attention & (columns < canvas.shape[1] - L)  # (B, T)
        uncond = torch.where(prompt, self.model.mask_id, canvas)
        both = self.model.forward_logits(torch.cat([canvas, uncond]), torch.cat([attention, attention]), L)
        cond, free = both.float().chunk(2)  # (B, L, V) each
        return (free + (scale + 1) * (cond - free)).log_softmax(-1)

    def _captures(
        self, logp: torch.Tensor, argmax: torch.Tensor, x0: torch.Tensor, ent: torch.Tensor, labels: torch.Tensor
    ) -> Captures:
        """This step's rows of the tables, (B, L, ...) each, from the logits the decoder used."""
        roles = labels.transpose(1, 2)  # (B, L, J)
        label_logp = logp.gather(-1, roles.clamp(min=0)).masked_fill(roles < 0, torch.nan)  # (B, L, J)
        out = {"label_logp": label_logp, "argmax": argmax.int(), "entropy": ent}
        if self.config.temperature > 0:
            out["x0"] = x0.int()
        if self.capture.top_k:
            top = logp.topk(self.capture.top_k, dim=-1)  # (B, L, K)
            out["topk_ids"], out["topk_logp"] = top.indices.int(), top.values
        if self.capture.logits:
            out["logits"] = logp.half()  # (B, L, V)
        return out

    # -- the loop and its inputs/outputs ----------------------------------------------------------

    def _denoise(self, batch: _Batch) -> tuple[torch.Tensor, torch.Tensor, Captures]:
        """Run all S steps; captures land in (Bp, S, L, ...) buffers allocated at the first step."""
        S, L = self.config.steps, self.config.gen_length
        canvas = batch.canvas
        fixation = torch.full((canvas.shape[0], L), -1, dtype=torch.int64, device=canvas.device)
        buffers: Captures = {}
        for t in range(S):
            canvas, fixation, captured = self._step(
                canvas, batch.attention, fixation, self._steps[t], batch.seeds, batch.labels, batch.targets
            )
            for name, value in captured.items():
                if name not in buffers:
                    buffers[name] = value.new_empty((value.shape[0], S, *value.shape[1:]))
                buffers[name][:, t] = value  # device copy, no host sync
        return canvas[:, -L:], fixation, buffers

    def _tables(self, batch: _Batch, tokens: torch.Tensor, fixation: torch.Tensor, captures: Captures) -> Tables:
        """Copy to numpy once and derive the small per-item tables."""
        B, S, L = batch.items, self.config.steps, self.config.gen_length
        tables = {name: value[:B].cpu().numpy() for name, value in captures.items()}
        tables["label_logp"] = tables["label_logp"][..., : batch.roles]
        fix = fixation[:B].cpu().numpy()  # (B, L)
        assert (fix >= 0).all(), "the schedule sums to L, so every position is committed"
        tok = tokens[:B].cpu().numpy().astype(np.int32)  # (B, L)
        is_eos = tok == self.model.eos_id
        tables["tokens"] = tok
        tables["fixation"] = fix.astype(np.int16)
        tables["commits"] = (fix[:, None, :] == np.arange(S)[None, :, None]).sum(-1).astype(np.int16)  # (B, S)
        tables["eos_len"] = np.where(is_eos.any(1), is_eos.argmax(1) + 1, L).astype(np.int32)
        tables["prompt_len"] = batch.prompt_len
        return tables

    def _batch(
        self,
        prompts: Sequence[Sequence[int]],
        labels: np.ndarray,
        seeds: np.ndarray,
        targets: np.ndarray | None,
    ) -> _Batch:
        """Validate the inputs and pad them to the bucketed device tensors the step expects."""
        B, L = len(prompts), self.config.gen_length
        label_ids, seed_ids, target_ids = self._checked(prompts, labels, seeds, targets)
        lengths = np.array([len(p) for p in prompts], dtype=np.int32)  # (B,)
        Bp, P = self.batch_size, _bucket(int(lengths.max()), _PROMPT_BUCKET)
        J, Jp = label_ids.shape[1], _bucket(max(label_ids.shape[1], 1), _ROLE_BUCKET)
        canvas = np.full((Bp, P + L), self.model.pad_id, dtype=np.int64)
        canvas[:, P:] = self.model.mask_id
        attention = np.zeros((Bp, P + L), dtype=bool)
        attention[:, P:] = True  # dummy rows: masks only, their prompt region fully padded
        for row, prompt in enumerate(prompts):
            canvas[row, P - len(prompt) : P] = prompt
            attention[row, P - len(prompt) : P] = True
        padded_labels = np.full((Bp, Jp, L), -1, dtype=np.int64)
        padded_labels[:B, :J] = label_ids
        padded_targets = np.full((Bp, L), self.model.eos_id, dtype=np.int64)
        padded_targets[:B] = np.where(target_ids < 0, self.model.eos_id, target_ids)
        padded_seeds = np.zeros(Bp, dtype=np.int64)
        padded_seeds[:B] = seed_ids
        device = self.model.device
        return _Batch(
            canvas=torch.as_tensor(canvas, device=device),
            attention=torch.as_tensor(attention, device=device),
            labels=torch.as_tensor(padded_labels, device=device),
            targets=torch.as_tensor(padded_targets, device=device),
            seeds=torch.as_tensor(padded_seeds, device=device),
            items=B,
            roles=J,
            prompt_len=lengths,
        )

    def _checked(
        self,
        prompts: Sequence[Sequence[int]],
        labels: np.ndarray,
        seeds: np.ndarray,
        targets: np.ndarray | None,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Refuse malformed inputs with a message naming the argument; returns int64 arrays."""
        B, L, V = len(prompts), self.config.gen_length, self.model.vocab_size
        if not 1 <= B <= self.batch_size:
            raise ConfigError(f"got {B} prompts; a run takes 1 to batch_size={self.batch_size}: batch them")
        guided = self.config.mode == "guided"
        if guided != (targets is not None):
            raise ConfigError(f"mode={self.config.mode!r} but targets is {'missing' if guided else 'given'}")
        label_ids = _int_array("labels", labels, (B, None, L), low=-1, high=V)
        seed_ids = _int_array("seeds", seeds, (B,), low=None, high=None)
        target_ids = (
            _int_array("targets", targets, (B, L), low=-1, high=V) if targets is not None else np.full((B, L), -1)
        )
        for row, prompt in enumerate(prompts):
            ids = _int_array(f"prompts[{row}]", np.asarray(prompt), (None,), low=0, high=V)
            if ids.size == 0:
                raise DataError(f"prompts[{row}] is empty; start it with at least a BOS token")
            if (ids == self.model.mask_id).any():
                raise DataError(f"prompts[{row}] contains the mask id {self.model.mask_id}; infilling is unsupported")
        return label_ids, seed_ids, target_ids


def _bucket(size: int, multiple: int) -> int:
    """`size` rounded up to a multiple of `multiple`."""
    return -(-size // multiple) * multiple


def _int_array(
    name: str, value: np.ndarray, shape: tuple[int | None, ...], low: int | None, high: int | None
) -> NDArray[np.int64]:
    """`value` as int64 after checking its dtype, shape (None = any size) and range [low, high)."""
    array = np.asarray(value)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{name} has dtype {array.dtype}; pass integer token ids")
    if array.ndim != len(shape) or any(want not in (None, got) for want, got in zip(shape, array.shape)):
        raise DataError(f"{name} has shape {array.shape}; expected {shape} (None = any)")
    array = array.astype(np.int64)
    if array.size and low is not None and high is not None and not low <= array.min() <= array.max() < high:
        raise DataError(f"{name} holds ids outside [{low}, {high}): min {array.min()}, max {array.max()}")
    return array


def _compiled(step: StepFn, device: torch.device) -> StepFn:
    """`step` compiled as one fixed-shape graph, or `step` itself (with a loud warning) if it cannot be."""
    blocker = _compile_blocker(device)
    if blocker is not None:
        _warn_eager(blocker)
        return step
    return torch.compile(step, fullgraph=True, dynamic=False, **_recompile_options())


def _recompile_options() -> dict[str, object]:
    """Allow `_GRAPH_LIMIT` graphs per Sampler. Every Sampler shares `_denoise_step`'s code object,
    so torch >= 2.13 isolates each compile's limit; older torch has one process-wide limit to raise."""
    if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
        return {"recompile_limit": _GRAPH_LIMIT, "isolate_recompiles": True}
    for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), _GRAPH_LIMIT))
            break
    return {}


def _compile_blocker(device: torch.device) -> str | None:
    """Why torch.compile cannot build kernels for `device` here, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version.split()[0]}"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "triton is not installed"
    if device.type == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.exc import InvalidCxxCompiler

        try:
            get_cpp_compiler()
        except InvalidCxxCompiler:
            return "no C++ compiler found (inductor needs g++ or clang++ on PATH)"
    return None


@functools.cache
def _warn_eager(reason: str) -> None:
    """Warn once per reason and process: a missing fast path must not go unnoticed."""
    warnings.warn(
        f"torch.compile is unavailable: {reason}. The sampler runs EAGER (same results, slower); "
        "fix the cause, or pass compile=False (--no-compile) to silence this warning.",
        RuntimeWarning,
        stacklevel=3,
    )
