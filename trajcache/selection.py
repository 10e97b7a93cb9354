"""What one denoising step commits: the proposal x0, the confidence, the schedule and the top-k rule.

LLaDA `generate` semantics (ML-GSAI/LLaDA generate.py), with two rules made explicit: ties in
confidence go to the lowest position (stable sort, not `torch.topk`), and randomness comes from
counter-based hashes of (seed, stream, step, position, vocab index), so a draw depends on the
item's seed only, never on batch order, batch size, device order of ops or compile.

Everything below except `step_schedule` is pure tensor code traced into the compiled step: no
host syncs, no Python branches on tensor values. Knows nothing of models, captures or stores.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from .config import Remasking, SamplerConfig

# SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators";
# constants from Vigna's splitmix64.c), written with int64 torch ops: multiplication wraps
# modulo 2**64 and `_srl` replaces the unsigned right shift that int64 `>>` does not do.
_GAMMA = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64

# Independent random streams per purpose, so the Gumbel noise and the random confidence of one
# (seed, step, position) are unrelated draws.
GUMBEL_STREAM = 0
RANDOM_STREAM = 1


def _srl(z: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical (unsigned) right shift of int64 values."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function: a bijective avalanche mix of 64-bit words."""
    z = (z ^ _srl(z, 30)) * _MIX1
    z = (z ^ _srl(z, 27)) * _MIX2
    return z ^ _srl(z, 31)


def _child(state: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """The (counter+1)-th output of a SplitMix64 generator whose state is `state`."""
    return _mix(state + (counter + 1) * _GAMMA)


def counter_uniform(
    seeds: torch.Tensor, stream: int, step: torch.Tensor, shape: tuple[int, ...]
) -> torch.Tensor:
    """Uniform draws in (0, 1), float64, shape (B, *shape), one per (seed, stream, step, index).

    seeds (B,) int64; step a 0-d int64 tensor (a tensor, so a new step is not a new graph). The
    trailing axes are hashed one after another (position, then vocab index), so a draw at index
    (l, v) is the same whatever the other axes' sizes are.
    """
    state = _child(_child(seeds, torch.full_like(seeds, stream)), step)  # (B,)
    for size in shape:
        index = torch.arange(size, device=seeds.device, dtype=torch.int64)
        state = _child(state[..., None], index)  # (B, ..., size)
    # Top 53 bits, centred in their bin: never exactly 0 or 1, so log(-log(u)) is finite.
    return (_srl(state, 11).double() + 0.5) * 2.0**-53


def propose(logp: torch.Tensor, temperature: float, seeds: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """x0 per position (B, L) int64 from log-probs (B, L, V).

    temperature 0: argmax. Otherwise LLaDA's Gumbel-max, argmax(exp(logits) / (-log u)^T) in
    float64 (LLaDA cites arXiv:2409.02908: low-precision Gumbel noise hurts), taken in log space,
    logits - T·log(-log u), which has the same argmax and cannot overflow.
    """
    if temperature == 0:
        return logp.argmax(-1)
    vocab = logp.shape[-1]
    u = counter_uniform(seeds, GUMBEL_STREAM, step, (logp.shape[1], vocab))  # (B, L, V)
    return (logp.double() - temperature * torch.log(-torch.log(u))).argmax(-1)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy (B, L) float32 of the distributions in log-probs (B, L, V); 0·log 0 = 0."""
    plogp = torch.where(logp > -torch.inf, logp.exp() * logp, 0.0)
    return -plogp.sum(-1)


def confidence(
    remasking: Remasking,
    logp: torch.Tensor,
    x0: torch.Tensor,
    ent: torch.Tensor,
    seeds: torch.Tensor,
    step: torch.Tensor,
) -> torch.Tensor:
    """Commit priority (B, L) float64: higher commits first. Finite for every position.

    low_confidence: noise-free probability of x0 (LLaDA); random: a uniform draw (LLaDA);
    margin: p1 - p2 of the two most likely tokens and entropy: -H (Dream's topk_margin, entropy).
    """
    if remasking == "low_confidence":
        conf = logp.gather(-1, x0[..., None])[..., 0].exp()
    elif remasking == "random":
        conf = counter_uniform(seeds, RANDOM_STREAM, step, (logp.shape[1],))
    elif remasking == "margin":
        top2 = logp.topk(2, dim=-1).values.exp()  # (B, L, 2)
        conf = top2[..., 0] - top2[..., 1]
    else:
        conf = -ent
    return conf.double()


def select(conf: torch.Tensor, eligible: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Commit mask (B, L) bool: the `count` eligible positions of highest confidence per row.

    Ties go to the lowest position: a stable descending sort keeps index order among equal keys
    (`torch.topk` leaves tie order undefined). count is a tensor, (B,) or 0-d, so a new count is
    not a new graph. Never more than the eligible positions are chosen.
    """
    key = conf.masked_fill(~eligible, -torch.inf)
    order = key.sort(dim=-1, descending=True, stable=True).indices  # (B, L)
    positions = torch.arange(conf.shape[-1], device=conf.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, positions)  # rank[b, l] of position l
    return (rank < count[..., None]) & eligible


def step_schedule(config: SamplerConfig) -> NDArray[np.int64]:
    """Tokens committed at each step (S,): LLaDA's `get_num_transfer_tokens` per block.

    Every block starts fully masked, so each block's count is block_length spread over its steps:
    base = n // steps each, the remainder to the first steps (10 over 4 steps: 3, 3, 2, 2).
    """
    per_block = config.steps // config.blocks
    base, extra = divmod(config.block_length, per_block)
    counts = np.full(per_block, base, dtype=np.int64)
    counts[:extra] += 1
    return np.tile(counts, config.blocks)  # (S,)
