"""Diffusion LMs behind one call: `DiffusionModel.forward_logits`.

Owns model loading (embedded names, HF directories, hub ids), model presets, the mask token, the
attention form and the logit alignment. Knows nothing of samplers, stores or metrics.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import inspect
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from .config import SamplerConfig
from .errors import ConfigError, ModelError
from .suites import preset_names, read_preset

Alignment = Literal["same", "shift"]
# "bidirectional_4d": pass an explicit [B, 1, T, T] padding-only mask. transformers' Llama given a
# 2D mask with padding is silently causal; a 4D mask is used as is, so attention is bidirectional.
# "padding_2d": pass the [B, T] mask (LLaDA/Dream remote code build their own bidirectional bias).
Attention = Literal["bidirectional_4d", "padding_2d"]

EMBEDDED_MODELS = ("tiny-full", "tiny-retain")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
    }
)


@dataclass(frozen=True)
class ModelPreset:
    """How to drive one model family: mask token, logit alignment, attention form, default sampler."""

    name: str
    # The mask is named by token (resolved through the tokenizer) or by id; neither: tokenizer.mask_token_id.
    mask_token: str | None = None
    mask_token_id: int | None = None
    alignment: Alignment = "same"
    attention: Attention = "bidirectional_4d"
    sampler: str = "tiny"
    # config.json `model_type`s (lower case) for which this preset is chosen when --preset is not given.
    model_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mask_token is not None and self.mask_token_id is not None:
            raise ConfigError(f"model preset {self.name!r}: give mask_token or mask_token_id, not both")
        if self.mask_token_id is not None and self.mask_token_id < 0:
            raise ConfigError(f"model preset {self.name!r}: mask_token_id must be >= 0; got {self.mask_token_id}")
        for key, value, allowed in (("alignment", self.alignment, Alignment), ("attention", self.attention, Attention)):
            if value not in get_args(allowed):
                raise ConfigError(f"model preset {self.name!r}: {key} {value!r} is not one of {get_args(allowed)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_types": list(self.model_types)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPreset:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model preset {data.get('name')!r}: unknown keys {unknown}; known: {sorted(known)}")
        types = data.get("model_types", [])
        if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
            raise ConfigError(f"model preset {data.get('name')!r}: model_types must be a list of names; got {types!r}")
        return cls(**{**data, "model_types": tuple(t.lower() for t in types)})


def load_preset(name: str) -> ModelPreset:
    """A model preset by name (`configs/models/<name>.toml`) or path."""
    stem, data = read_preset("models", name)
    return ModelPreset.from_dict({"name": stem, **data})


def load_sampler_preset(name: str) -> SamplerConfig:
    """A sampler preset by name (`configs/samplers/<name>.toml`) or path."""
    return SamplerConfig.from_dict(read_preset("samplers", name)[1])


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
    preset: ModelPreset | None = None
    # The HF folder the weights and tokenizer were read from; identity() hashes its files.
    model_dir: Path | None = None

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

    def identity(self) -> dict[str, Any]:
        """What produced the logits, for the run fingerprint: file hashes and the settings applied.

        Hashes the weight files, tokenizer files and config/code files of `model_dir` (not its
        path, so a copied model keeps its identity), plus preset, alignment, attention, ids, dtype.
        """
        if self.model_dir is None:
            raise ModelError(
                f"{self.source}: no model directory to hash; save the model with save_pretrained and use load_model"
            )
        files = sorted(p for p in self.model_dir.iterdir() if p.is_file())
        return {
            "weights": {p.name: _sha256(p) for p in files if p.suffix in WEIGHT_SUFFIXES},
            "tokenizer": {p.name: _sha256(p) for p in files if p.name in TOKENIZER_FILES},
            "config": {p.name: _sha256(p) for p in files if p.name == "config.json" or p.suffix == ".py"},
            "preset": self.preset.name if self.preset else None,
            "alignment": self.alignment,
            "attention": self.attention,
            "mask_id": self.mask_id,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
            "dtype": str(next(self.network.parameters()).dtype).removeprefix("torch."),
        }


def _sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    """Keyed by mtime and size too, so a rewritten file is hashed again (multi-GB weights: hash once)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ loading


def load_model(
    source: str = "tiny-full",
    *,
    preset: str | None = None,
    mask_token_id: int | None = None,
    alignment: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> DiffusionModel:
    """Load a masked-diffusion LM: an embedded name (tiny-full, tiny-retain), an HF folder or a hub id.

    Settings resolve flag first, then preset (given, embedded: tiny, else guessed from the config's
    model_type), then tokenizer. Remote code runs only with `trust_remote_code`.
    """
    torch_dtype, torch_device = _parse_dtype(dtype), _parse_device(device)
    if alignment is not None and alignment not in get_args(Alignment):
        raise ConfigError(f"--alignment {alignment!r} is unknown; choose from {get_args(Alignment)}")
    model_dir = _model_dir(source)
    config = _read_config(model_dir)
    remote = _uses_remote_code(model_dir, config, trust_remote_code)
    chosen = load_preset(preset or "tiny") if preset or source in EMBEDDED_MODELS else _guess_preset(model_dir, config)
    tokenizer = _load_tokenizer(model_dir, remote)
    network = _load_network(model_dir, config, remote, torch_dtype)
    network = network.to(torch_device).eval().requires_grad_(False)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ModelError(f"{source}: the tokenizer has no EOS token; set eos_token in tokenizer_config.json")
    model = DiffusionModel(
        network=network,
        tokenizer=tokenizer,
        mask_id=_mask_id(source, chosen, tokenizer, mask_token_id),
        eos_id=eos,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        alignment=alignment or chosen.alignment,  # type: ignore[arg-type]
        attention=chosen.attention,
        source=source,
        preset=chosen,
        model_dir=model_dir,
    )
    _check_mask_id(model)
    return model


def _parse_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is unknown; choose from {list(DTYPES)}")
    return DTYPES[dtype]


def _parse_device(device: str) -> torch.device:
    try:
        parsed = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"--device {device!r} is not a torch device ({e}); use cpu, cuda or cuda:N") from e
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible); use cpu")
    return parsed


def _model_dir(source: str) -> Path:
    """The local folder for `source`; hub ids are downloaded into the HF cache first."""
    if source in EMBEDDED_MODELS:
        path = Path(str(importlib.resources.files("trajcache") / "embedded" / "models" / source))
        if not (path / "config.json").is_file():
            raise ModelError(f"embedded model {source!r} is missing at {path}; reinstall trajcache")
        return path
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ModelError(f"{source}: no model folder there; give an HF model folder, a hub id or {EMBEDDED_MODELS}")
    return _download(source)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        # Only what loading reads: skip other frameworks' weights and original (non-HF) checkpoints.
        folder = snapshot_download(repo_id, ignore_patterns=["*.msgpack", "*.h5", "*.onnx", "*.gguf", "original/*"])
    except (OSError, ValueError) as e:  # offline, unknown repo, gated, invalid id
        raise ModelError(
            f"hub model {repo_id!r} could not be fetched ({type(e).__name__}); "
            "download it (huggingface-cli download) and pass the local folder"
        ) from e
    return Path(folder)


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelError(f"{model_dir}: no config.json; give an HF model folder (save_pretrained layout)")
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: invalid JSON ({e.msg}, line {e.lineno}); fix or re-download it") from e


def _uses_remote_code(model_dir: Path, config: dict[str, Any], trust_remote_code: bool) -> bool:
    """Remote code runs when the folder ships it (`auto_map`) and the user allowed it."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if "auto_map" not in config:
        return False
    if not trust_remote_code and config.get("model_type") not in CONFIG_MAPPING_NAMES:
        raise ModelError(
            f"{model_dir}: the model ships its own code (auto_map in config.json, model_type "
            f"{config.get('model_type')!r}); pass --trust-remote-code if you trust it"
        )
    return trust_remote_code


def _guess_preset(model_dir: Path, config: dict[str, Any]) -> ModelPreset:
    model_type = str(config.get("model_type", "")).lower()
    presets = [load_preset(name) for name in preset_names("models")]
    matches = [p for p in presets if model_type in p.model_types]
    if len(matches) != 1:
        found = "several presets" if matches else "no preset"
        raise ModelError(
            f"{model_dir}: {found} fit model_type {model_type!r}; pass --preset ({', '.join(p.name for p in presets)})"
        )
    return matches[0]


def _load_tokenizer(model_dir: Path, remote: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=remote)
    except (OSError, ValueError) as e:
        raise ModelError(f"{model_dir}: tokenizer could not be loaded ({e}); the folder needs tokenizer files") from e


def _load_network(model_dir: Path, config: dict[str, Any], remote: bool, dtype: torch.dtype) -> torch.nn.Module:
    """AutoModelForCausalLM, or AutoModel for remote code that maps only that (Dream); chosen from config."""
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    auto_map = config.get("auto_map", {}) if remote else {}
    if remote and "AutoModelForCausalLM" not in auto_map and "AutoModel" not in auto_map:
        raise ModelError(f"{model_dir}: auto_map has neither AutoModelForCausalLM nor AutoModel; cannot load it")
    if not remote and config.get("model_type") not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(
            f"{model_dir}: model_type {config.get('model_type')!r} has no LM head class in transformers; "
            "a diffusion LM needs per-position logits"
        )
    cls = AutoModel if remote and "AutoModelForCausalLM" not in auto_map else AutoModelForCausalLM
    try:
        return cls.from_pretrained(model_dir, dtype=dtype, trust_remote_code=remote)
    except (OSError, ValueError) as e:
        raise ModelError(f"{model_dir}: weights could not be loaded ({e})") from e


def _mask_id(source: str, preset: ModelPreset, tokenizer: Any, flag: int | None) -> int:
    if flag is not None:
        return flag
    if preset.mask_token is not None:
        vocab = tokenizer.get_vocab()
        if preset.mask_token not in vocab:
            raise ModelError(
                f"{source}: preset {preset.name!r} mask token {preset.mask_token!r} is not in the tokenizer; "
                "pass --mask-token-id or another --preset"
            )
        return int(vocab[preset.mask_token])
    if preset.mask_token_id is not None:
        return preset.mask_token_id
    if tokenizer.mask_token_id is None:
        raise ModelError(f"{source}: no mask token (preset {preset.name!r}, tokenizer); pass --mask-token-id")
    return int(tokenizer.mask_token_id)


def _check_mask_id(model: DiffusionModel) -> None:
    if not 0 <= model.mask_id < model.vocab_size:
        raise ModelError(
            f"{model.source}: mask id {model.mask_id} is outside the vocabulary [0, {model.vocab_size}); "
            "fix --mask-token-id or --preset"
        )
    if model.mask_id in (model.eos_id, model.pad_id):
        raise ModelError(
            f"{model.source}: mask id {model.mask_id} is also the EOS/pad id; pass the real --mask-token-id"
        )
