"""Diffusion LMs behind one call: `DiffusionModel.forward_logits`.

Owns model loading (embedded names, HF directories, hub ids), the mask token, the attention form
and the logit alignment. Knows nothing of samplers, stores or metrics.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

import torch

Alignment = Literal["same", "shift"]
# "bidirectional_4d": pass an explicit [B, 1, T, T] padding-only mask. transformers' Llama given a
# 2D mask with padding is silently causal; a 4D mask is used as is, so attention is bidirectional.
# "padding_2d": pass the [B, T] mask (LLaDA/Dream remote code build their own bidirectional bias).
Attention = Literal["bidirectional_4d", "padding_2d"]


@dataclass
class DiffusionModel:
    """A loaded masked-diffusion LM with what the sampler needs to drive it."""

    network: torch.nn.Module
    tokenizer: object  # transformers.PreTrainedTokenizerBase
    mask_id: int
    eos_id: int
    pad_id: int
    alignment: Alignment
    attention: Attention
    source: str

    def __post_init__(self) -> None:
        params = inspect.signature(self.network.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_keep = "logits_to_keep" in params

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def vocab_size(self) -> int:
        """Width of the logits (may exceed the tokenizer's vocabulary: padded rows)."""
        return int(self.network.get_output_embeddings().weight.shape[0])

    def forward_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits for the last `keep` columns, aligned so row i predicts the token at column T-keep+i.

        input_ids (B, T) long, attention_mask (B, T) bool (False = left padding). Pure tensor code:
        no host syncs, no data-dependent Python branches, so it traces into one compiled graph.
        Returns (B, keep, V) in the network's dtype.
        """
        extra = 1 if self.alignment == "shift" else 0  # shift: row for column p is the output at p-1
        kwargs: dict[str, object] = {}
        if self.attention == "bidirectional_4d":
            pair = attention_mask[:, None, :, None] & attention_mask[:, None, None, :]  # (B, 1, T, T)
            # Padding rows attend to themselves only, so no row is fully masked (NaN softmax).
            eye = torch.eye(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
            kwargs["attention_mask"] = pair | eye
        else:
            kwargs["attention_mask"] = attention_mask.long()
        if self._takes_positions:
            # Positions count from the first real token, so left padding does not move RoPE phases
            # and an item's logits do not depend on what it is batched with.
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if self._takes_keep:
            kwargs["logits_to_keep"] = keep + extra
        logits = self.network(input_ids=input_ids, **kwargs).logits
        logits = logits[:, -(keep + extra) :]
        return logits[:, :keep] if extra else logits
