"""Sampler and capture configuration: frozen, validated, serialisable into store attrs.

Both configs are part of a run's fingerprint (see `record`), so every field that changes what is
recorded lives here and nothing else does (batch size, compile and device do not change the tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from .errors import ConfigError

Remasking = Literal["low_confidence", "random", "margin", "entropy"]
Mode = Literal["unguided", "guided"]


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(known)}")


@dataclass(frozen=True)
class SamplerConfig:
    """LLaDA-style masked-diffusion sampling (DESIGN §4)."""

    steps: int = 16
    gen_length: int = 32
    # One block = fully parallel decoding; smaller blocks decode semi-autoregressively (LLaDA uses 32).
    block_length: int = 32
    temperature: float = 0.0
    remasking: Remasking = "low_confidence"
    cfg_scale: float = 0.0
    mode: Mode = "unguided"
    # Guided mode writes this role's label token at each chosen position (teacher forcing).
    target_role: str = "answer"
    # Base of the per-item seeds; an item's seed is derived from this and its id, never from batch order.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gen_length < 1 or self.steps < 1 or self.block_length < 1:
            raise ConfigError(
                f"steps, gen_length and block_length must be >= 1; got steps={self.steps}, "
                f"gen_length={self.gen_length}, block_length={self.block_length}"
            )
        if self.gen_length % self.block_length:
            raise ConfigError(
                f"--gen-length {self.gen_length} must be a multiple of --block-length {self.block_length}"
            )
        blocks = self.gen_length // self.block_length
        if self.steps % blocks:
            raise ConfigError(
                f"--steps {self.steps} must be a multiple of the number of blocks "
                f"({self.gen_length}/{self.block_length} = {blocks})"
            )
        if self.steps // blocks > self.block_length:
            raise ConfigError(
                f"{self.steps // blocks} steps per block exceed --block-length {self.block_length}: "
                "some steps would commit nothing"
            )
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0; got {self.temperature}")
        if self.cfg_scale < 0:
            raise ConfigError(f"--cfg-scale must be >= 0; got {self.cfg_scale}")
        if self.remasking not in get_args(Remasking):
            raise ConfigError(f"--remasking {self.remasking!r} is unknown; choose from {get_args(Remasking)}")
        if self.mode not in get_args(Mode):
            raise ConfigError(f"--mode {self.mode!r} is unknown; choose from {get_args(Mode)}")

    @property
    def blocks(self) -> int:
        return self.gen_length // self.block_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplerConfig:
        _check_keys(cls, data)
        return cls(**data)


@dataclass(frozen=True)
class CaptureConfig:
    """What one recording keeps per step besides the label log-probs (DESIGN §5)."""

    # Top-k tokens and log-probs per (step, position); 0 disables. Not needed by the TOFU metrics.
    top_k: int = 8
    # Mantissa bits kept of the stored top-k log-probs: 7 = bfloat16 precision (relative error
    # <= 2^-8), which compresses ~3x better than full float32 (23 = exact). Label log-probs,
    # entropy and every other field are always stored exactly.
    topk_bits: int = 7
    # Full-vocabulary log-probs, float16 [S, L, V]; only sensible for small vocabularies.
    logits: bool = False

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be >= 0; got {self.top_k}")
        if not 1 <= self.topk_bits <= 23:
            raise ConfigError(f"--topk-bits must be in [1, 23] (float32 has 23 mantissa bits); got {self.topk_bits}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptureConfig:
        _check_keys(cls, data)
        return cls(**data)
