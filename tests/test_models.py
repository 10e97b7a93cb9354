"""Tests for trajcache.models: presets, load_model, forward_logits semantics and identity()."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from trajcache.config import SamplerConfig
from trajcache.errors import ConfigError, ModelError
from trajcache.models import DiffusionModel, ModelPreset, load_model, load_preset, load_sampler_preset

EMBEDDED = Path(__file__).resolve().parents[1] / "trajcache" / "embedded" / "models"
LLADA_VOCAB = 126464  # LLaDA-8B's embedding size: its mask id 126336 must fit


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(EMBEDDED / "tiny-full")


def _save_llama(folder: Path, tokenizer: Any, seed: int) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A random tiny Llama with the embedded tokenizer, in HF layout."""
    return _save_llama(tmp_path_factory.mktemp("llama"), tokenizer, seed=0)


@pytest.fixture(scope="module")
def llama(llama_dir: Path) -> DiffusionModel:
    return load_model(str(llama_dir))


# ------------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    ("name", "mask", "alignment", "attention", "steps"),
    [
        ("tiny", "<|mdm_mask|>", "same", "bidirectional_4d", 16),
        ("llada", 126336, "same", "padding_2d", 128),
        ("dream", "<|mask|>", "shift", "bidirectional_4d", 128),
    ],
)
def test_presets_resolve(name: str, mask: str | int, alignment: str, attention: str, steps: int) -> None:
    preset = load_preset(name)
    assert preset.name == name and preset.sampler == name
    assert (preset.mask_token if isinstance(mask, str) else preset.mask_token_id) == mask
    assert (preset.alignment, preset.attention) == (alignment, attention)
    sampler = load_sampler_preset(preset.sampler)
    assert isinstance(sampler, SamplerConfig) and sampler.steps == steps
    assert ModelPreset.from_dict(preset.to_dict()) == preset


def test_sampler_presets_follow_reference_demos() -> None:
    assert (load_sampler_preset("tiny").gen_length, load_sampler_preset("tiny").block_length) == (32, 32)
    llada = load_sampler_preset("llada")
    assert (llada.gen_length, llada.block_length, llada.blocks) == (128, 32, 4)
    dream = load_sampler_preset("dream")
    assert (dream.gen_length, dream.block_length, dream.temperature) == (128, 128, 0.0)


def test_unknown_presets_list_available() -> None:
    with pytest.raises(ConfigError, match=r"model preset 'lada' is unknown; available: \['dream', 'llada', 'tiny'\]"):
        load_preset("lada")
    with pytest.raises(ConfigError, match=r"sampler preset 'fast' is unknown; available: \['dream', 'llada', 'tiny'\]"):
        load_sampler_preset("fast")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mask_token": "<m>", "mask_token_id": 3}, "not both"),
        ({"mask_token_id": -1}, "must be >= 0"),
        ({"alignment": "causal"}, "alignment 'causal' is not one of"),
        ({"attention": "causal"}, "attention 'causal' is not one of"),
        ({"mask": "<m>"}, r"unknown keys \['mask'\]"),
        ({"model_types": "llama"}, "model_types must be a list of names"),
    ],
)
def test_invalid_presets(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelPreset.from_dict({"name": "x", **data})


# ----------------------------------------------------------------------------- load_model


def test_default_loads_the_embedded_model(tokenizer: Any) -> None:
    model = load_model()
    assert model.source == "tiny-full" and model.preset == load_preset("tiny")
    assert model.mask_id == tokenizer.convert_tokens_to_ids("<|mdm_mask|>") == tokenizer.mask_token_id
    assert (model.eos_id, model.pad_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert not model.network.training
    assert not any(p.requires_grad for p in model.network.parameters())
    assert next(model.network.parameters()).dtype == torch.float32  # stored as bfloat16, loaded as asked
    assert load_model("tiny-retain").model_dir == EMBEDDED / "tiny-retain"


def test_local_llama_guesses_the_tiny_preset(llama: DiffusionModel, llama_dir: Path) -> None:
    assert llama.preset is not None and llama.preset.name == "tiny"
    assert (llama.alignment, llama.attention, llama.model_dir) == ("same", "bidirectional_4d", llama_dir)
    assert type(llama.network).__name__ == "LlamaForCausalLM"


def test_loaded_model_is_bidirectional(llama: DiffusionModel) -> None:
    torch.manual_seed(1)
    ids = torch.randint(10, 1000, (1, 12))
    mask = torch.ones_like(ids, dtype=torch.bool)
    changed = ids.clone()
    changed[0, 8] = ids[0, 8] + 1
    before, after = llama.forward_logits(ids, mask, 12), llama.forward_logits(changed, mask, 12)  # (1, 12, V)
    assert not torch.allclose(before[0, :8], after[0, :8], atol=1e-6)  # positions left of 8 see token 8


def test_left_padding_does_not_change_logits(llama: DiffusionModel) -> None:
    torch.manual_seed(2)
    lengths, T, keep = [7, 10, 5], 10, 5  # the kept columns are real tokens in every row
    rows = [torch.randint(10, 1000, (n,)) for n in lengths]
    ids = torch.full((3, T), llama.pad_id)
    mask = torch.zeros((3, T), dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, T - len(row) :], mask[b, T - len(row) :] = row, True
    batched = llama.forward_logits(ids, mask, keep)  # (3, keep, V)
    for b, row in enumerate(rows):
        alone = llama.forward_logits(row[None], torch.ones((1, len(row)), dtype=torch.bool), keep)
        torch.testing.assert_close(batched[b], alone[0], atol=1e-5, rtol=0)


class ShiftedNetwork(torch.nn.Module):
    """Wraps a network so that the output at p is the inner output at p+1 (Dream's causal layout)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.inner.get_output_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> Any:
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        junk = torch.full_like(logits[:, :1], float("nan"))
        return type("Output", (), {"logits": torch.cat([logits[:, 1:], junk], dim=1)})


def test_shift_alignment_undoes_a_one_position_shift(llama: DiffusionModel) -> None:
    shifted = DiffusionModel(
        network=ShiftedNetwork(llama.network), tokenizer=llama.tokenizer, mask_id=llama.mask_id,
        eos_id=llama.eos_id, pad_id=llama.pad_id, alignment="shift", attention=llama.attention, source="wrapped",
    )
    torch.manual_seed(3)
    ids = torch.randint(10, 1000, (2, 9))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :3] = False
    expected = llama.forward_logits(ids, mask, 4)
    torch.testing.assert_close(shifted.forward_logits(ids, mask, 4), expected, atol=1e-6, rtol=0)
    same = dataclasses.replace(shifted, alignment="same")
    assert not torch.allclose(same.forward_logits(ids, mask, 4)[:, :-1], expected[:, :-1])


def test_settings_resolve_flag_first(llama_dir: Path) -> None:
    model = load_model(str(llama_dir), preset="dream", mask_token_id=7, alignment="same", dtype="bfloat16")
    assert (model.mask_id, model.alignment, model.attention) == (7, "same", "bidirectional_4d")
    assert model.preset is not None and model.preset.name == "dream"
    assert next(model.network.parameters()).dtype == torch.bfloat16


# -------------------------------------------------------------------------- mask id errors


def test_preset_mask_token_missing_from_tokenizer(llama_dir: Path) -> None:
    expected = r"preset 'dream' mask token '<\|mask\|>' is not in the tokenizer; pass --mask-token-id"
    with pytest.raises(ModelError, match=expected):
        load_model(str(llama_dir), preset="dream")


def test_no_mask_anywhere_names_the_flag(tmp_path: Path, llama_dir: Path, tokenizer: Any) -> None:
    folder = tmp_path / "nomask"
    shutil.copytree(llama_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("mask_token")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    preset = tmp_path / "plain.toml"
    preset.write_text('alignment = "same"\nattention = "bidirectional_4d"\nsampler = "tiny"\n')
    with pytest.raises(ModelError, match=r"no mask token \(preset 'plain', tokenizer\); pass --mask-token-id"):
        load_model(str(folder), preset=str(preset))
    assert load_model(str(folder), preset=str(preset), mask_token_id=5).mask_id == 5


def test_unusable_mask_ids(llama: DiffusionModel, llama_dir: Path) -> None:
    V = llama.vocab_size
    with pytest.raises(ModelError, match=rf"mask id {V} is outside the vocabulary \[0, {V}\)"):
        load_model(str(llama_dir), mask_token_id=V)
    with pytest.raises(ModelError, match="also the EOS/pad id"):
        load_model(str(llama_dir), mask_token_id=llama.eos_id)


# ------------------------------------------------------------------------- source errors


def test_unknown_model_type_asks_for_preset(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    with pytest.raises(ModelError, match=r"no preset fit model_type 'mistral'; pass --preset \(dream, llada, tiny\)"):
        load_model(str(tmp_path))


def test_hub_id_offline_is_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"hub model 'nobody-here/no-such-model' could not be fetched.*local folder"):
        load_model("nobody-here/no-such-model")


@pytest.mark.parametrize("source", ["./missing-model", "/nonexistent/model/dir", "a/b/c"])
def test_missing_local_folder(source: str) -> None:
    with pytest.raises(ModelError, match="no model folder there"):
        load_model(source)


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "fp8"}, r"--dtype 'fp8' is unknown"),
        ({"device": "gpu"}, r"--device 'gpu' is not a torch device"),
        ({"device": "cuda:999"}, "no such CUDA device"),
        ({"alignment": "causal"}, r"--alignment 'causal' is unknown"),
    ],
)
def test_invalid_flags(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_model("tiny-full", **kwargs)


# --------------------------------------------------------------------------- remote code

TOY_CONFIGURATION = '''
from transformers import PretrainedConfig


class ToyConfig(PretrainedConfig):
    model_type = "toy"

    def __init__(self, vocab_size=64, hidden_size=4, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)
'''

TOY_MODELING = '''
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_toy import ToyConfig


class ToyLM(PreTrainedModel):
    """Embedding, then each position adds the mean over the unpadded sequence: bidirectional."""

    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        m = attention_mask[..., None].to(h.dtype)
        h = h + (h * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
        return CausalLMOutput(logits=self.head(h))


class ToyBare(ToyLM):
    pass
'''


def _write_remote_model(folder: Path, model_type: str, auto_map: dict[str, str], tokenizer: Any) -> Path:
    """A folder shaped like LLaDA's and Dream's hub repos: config.json with auto_map plus the code files."""
    folder.mkdir()
    (folder / "configuration_toy.py").write_text(TOY_CONFIGURATION)
    (folder / "modeling_toy.py").write_text(TOY_MODELING)
    config = {"model_type": model_type, "vocab_size": LLADA_VOCAB, "hidden_size": 2, "architectures": ["ToyLM"],
              "auto_map": {"AutoConfig": "configuration_toy.ToyConfig", **auto_map}}
    (folder / "config.json").write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(4)
    weights = {name: torch.randn(LLADA_VOCAB, 2, generator=generator) for name in ("embed.weight", "head.weight")}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llada_style_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    auto_map = {"AutoModelForCausalLM": "modeling_toy.ToyLM", "AutoModel": "modeling_toy.ToyBare"}
    return _write_remote_model(tmp_path_factory.mktemp("remote") / "llada_toy", "llada", auto_map, tokenizer)


def test_remote_code_is_refused_without_trust(llada_style_dir: Path) -> None:
    expected = r"ships its own code \(auto_map.*model_type 'llada'\); pass --trust-remote-code"
    with pytest.raises(ModelError, match=expected):
        load_model(str(llada_style_dir))


def test_remote_code_loads_with_trust(llada_style_dir: Path) -> None:
    model = load_model(str(llada_style_dir), trust_remote_code=True)
    assert type(model.network).__name__ == "ToyLM"  # AutoModelForCausalLM entry of auto_map
    assert model.preset is not None and model.preset.name == "llada"  # guessed from model_type
    assert (model.mask_id, model.attention, model.alignment) == (126336, "padding_2d", "same")
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = ids != 0
    logits = model.forward_logits(ids, mask, 3)  # (2, 3, V)
    assert logits.shape == (2, 3, LLADA_VOCAB) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])  # the padded row sees less context


def test_remote_code_with_only_automodel(tmp_path: Path, tokenizer: Any) -> None:
    folder = _write_remote_model(tmp_path / "dream_toy", "Dream", {"AutoModel": "modeling_toy.ToyBare"}, tokenizer)
    model = load_model(str(folder), trust_remote_code=True, mask_token_id=9)
    assert type(model.network).__name__ == "ToyBare"
    assert model.preset is not None and (model.preset.name, model.alignment) == ("dream", "shift")


# ------------------------------------------------------------------------------ identity


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_identity_hashes_files_and_settings(llama: DiffusionModel, llama_dir: Path) -> None:
    identity = llama.identity()
    assert identity["weights"] == {"model.safetensors": _sha256(llama_dir / "model.safetensors")}
    assert identity["tokenizer"]["tokenizer.json"] == _sha256(llama_dir / "tokenizer.json")
    assert set(identity["tokenizer"]) >= {"tokenizer.json", "tokenizer_config.json"}
    assert identity["config"] == {"config.json": _sha256(llama_dir / "config.json")}
    assert {k: identity[k] for k in ("preset", "alignment", "attention", "mask_id", "dtype")} == {
        "preset": "tiny", "alignment": "same", "attention": "bidirectional_4d", "mask_id": llama.mask_id,
        "dtype": "float32",
    }
    json.dumps(identity)  # goes into the fingerprint's canonical JSON


def test_identity_follows_bytes_not_location(
    tmp_path: Path, llama: DiffusionModel, llama_dir: Path, tokenizer: Any
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(llama_dir, copy)
    assert load_model(str(copy)).identity() == llama.identity()
    other = _save_llama(tmp_path / "other", tokenizer, seed=1)
    assert load_model(str(other)).identity()["weights"] != llama.identity()["weights"]
    assert load_model(str(copy), mask_token_id=5).identity()["mask_id"] == 5
    assert load_model(str(copy), dtype="bfloat16").identity()["dtype"] == "bfloat16"


def test_identity_needs_a_folder(llama: DiffusionModel) -> None:
    bare = dataclasses.replace(llama, model_dir=None)
    with pytest.raises(ModelError, match="no model directory to hash"):
        bare.identity()


def test_identity_of_the_remote_model_includes_its_code(llada_style_dir: Path) -> None:
    identity = load_model(str(llada_style_dir), trust_remote_code=True).identity()
    assert set(identity["config"]) == {"config.json", "configuration_toy.py", "modeling_toy.py"}
