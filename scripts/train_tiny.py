"""Train the two embedded tiny masked-diffusion LMs (`tiny-full`, `tiny-retain`) and evaluate them.

Writes, per model folder under trajcache/embedded/models/: a byte-level BPE tokenizer with the
chat template, and a tiny `LlamaForCausalLM` (config.json + model.safetensors) used
bidirectionally (explicit 4D mask, as `trajcache.models.DiffusionModel` drives it). Objective:
MDLM / LLaDA SFT on the trajcache item layout (prompt = chat template with generation prompt;
answer region = answer tokens + <|eot|>, padded with <|eot|> to 32 positions).

    python scripts/train_tiny.py                # tokenizer, train both models, evaluate
    python scripts/train_tiny.py --init-only    # tokenizer + randomly initialised models
    python scripts/train_tiny.py --eval-only    # evaluate the committed models
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trajcache.config import CaptureConfig  # noqa: E402
from trajcache.models import DiffusionModel, load_model, load_sampler_preset  # noqa: E402
from trajcache.sampler import Sampler  # noqa: E402

DATA = ROOT / "trajcache/embedded/data"
MODELS = ROOT / "trajcache/embedded/models"
SPLITS = ("forget", "retain", "holdout", "real_authors", "world_facts")
TRAIN_SPLITS = {"tiny-full": ("forget", "retain", "real_authors", "world_facts"),
                "tiny-retain": ("retain", "real_authors", "world_facts")}
PAD, EOT, MASK, USER, ASSISTANT = "<|pad|>", "<|eot|>", "<|mdm_mask|>", "<|user|>", "<|assistant|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}<|eot|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
GEN_LENGTH = 32  # trajcache's default generation length: answer (<= 28 tokens) + EOS + slack
MAX_ANSWER_TOKENS = 28
# Rows of the output layer. Larger than the tokenizer (padded rows, as LLaDA pads 126,349 tokens to
# 126,464) so that stored-bytes vs full-logits comparisons see a realistic vocabulary width.
# 8192, not 16384: on 2 CPU cores a step costs 0.13 s against 0.205 s, and 16384 rows needed ~2800
# steps per model to reach the quality target (1800 gave ROUGE-L 0.83-0.87), ~19 min for both models
# against a 15-min budget. 8192 reaches it in 3000 steps, ~13.5 min.
MODEL_VOCAB = 8192
MAX_BYTES = 10_000_000


def load_split(name: str) -> list[dict]:
    with open(DATA / f"{name}.json", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# --------------------------------------------------------------------------- tokenizer


def _label_texts() -> list[str]:
    """Every text the models may be scored on as a label sequence (answers, paraphrases, perturbed)."""
    texts = []
    for split in SPLITS:
        for row in load_split(split):
            texts += [row["answer"], *row.get("perturbed_answer", [])]
            texts += [row["paraphrased_answer"]] if "paraphrased_answer" in row else []
    return texts


def _question_texts() -> list[str]:
    texts = []
    for split in SPLITS:
        for row in load_split(split):
            texts += [row["question"]] + ([row["paraphrased_question"]] if "paraphrased_question" in row else [])
    return texts


def build_tokenizer(vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Byte-level BPE without a prefix space, so decode(encode(text)) == text for every answer."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[PAD, EOT, MASK, USER, ASSISTANT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(_question_texts() + _label_texts(), trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token=PAD, eos_token=EOT, mask_token=MASK,
        extra_special_tokens=[USER, ASSISTANT], clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    _check_tokenizer(tok)
    return tok


def _check_tokenizer(tok: PreTrainedTokenizerFast) -> None:
    for text in _question_texts() + _label_texts():
        if tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=True) != text:
            raise SystemExit(f"tokenizer does not round-trip {text!r}")
    for text in _label_texts():
        if (n := len(tok.encode(text, add_special_tokens=False))) > MAX_ANSWER_TOKENS:
            raise SystemExit(f"{text!r} has {n} tokens > {MAX_ANSWER_TOKENS}; shorten the template")


# --------------------------------------------------------------------------- items


def _ids(encoded: object) -> list[int]:
    """apply_chat_template(tokenize=True) returns a list or a BatchEncoding depending on version."""
    return list(encoded["input_ids"]) if hasattr(encoded, "keys") else list(encoded)  # type: ignore[index]


def encode_item(tok: PreTrainedTokenizerFast, question: str, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, label ids): labels = the full chat's ids after the prompt = answer + <|eot|>."""
    user = [{"role": "user", "content": question}]
    prompt = _ids(tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True))
    full = _ids(tok.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=True))
    if full[: len(prompt)] != prompt:
        raise SystemExit(f"chat prompt is not a prefix of the full chat for {question!r}")
    return prompt, full[len(prompt) :]


@dataclass
class Batch:
    """Left-padded prompts followed by the GEN_LENGTH answer region."""

    prompt: torch.Tensor  # (N, P) long, left-padded with pad
    prompt_mask: torch.Tensor  # (N, P) bool
    region: torch.Tensor  # (N, GEN_LENGTH) long: answer, <|eot|>, <|eot|> padding


def make_batch(tok: PreTrainedTokenizerFast, rows: list[dict]) -> Batch:
    pairs = [encode_item(tok, r["question"], r["answer"]) for r in rows]
    width = max(len(p) for p, _ in pairs)
    prompt = torch.full((len(pairs), width), tok.pad_token_id, dtype=torch.long)
    region = torch.full((len(pairs), GEN_LENGTH), tok.eos_token_id, dtype=torch.long)
    for i, (p, labels) in enumerate(pairs):
        assert len(labels) <= GEN_LENGTH, (rows[i]["answer"], len(labels))
        prompt[i, width - len(p) :] = torch.tensor(p)
        region[i, : len(labels)] = torch.tensor(labels)
    return Batch(prompt, prompt != tok.pad_token_id, region)


# --------------------------------------------------------------------------- model


def model_config(tok: PreTrainedTokenizerFast, args: argparse.Namespace) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        max_position_embeddings=128, tie_word_embeddings=True, attn_implementation="sdpa",
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
    )


def _bidirectional(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(4D bool attention mask, position ids) exactly as DiffusionModel.forward_logits builds them."""
    pair = mask[:, None, :, None] & mask[:, None, None, :]  # (B, 1, T, T)
    eye = torch.eye(mask.shape[1], dtype=torch.bool)
    return pair | eye, (mask.long().cumsum(-1) - 1).clamp(min=0)


def diffusion_model(network: LlamaForCausalLM, tok: PreTrainedTokenizerFast, source: str) -> DiffusionModel:
    return DiffusionModel(network=network, tokenizer=tok, mask_id=tok.mask_token_id, eos_id=tok.eos_token_id,
                          pad_id=tok.pad_token_id, alignment="same", attention="bidirectional_4d", source=source)


def mdlm_loss(network: LlamaForCausalLM, batch: Batch, mask_id: int, gen: torch.Generator) -> torch.Tensor:
    """LLaDA SFT loss: sum over masked answer-region tokens of CE / t, over B * GEN_LENGTH.

    t is stratified (t_i = (u + i/B) mod 1): the 1/t weight makes iid t very noisy. The output
    projection runs only at masked positions, since the padded vocabulary makes it the dominant cost.
    """
    b = batch.region.shape[0]
    t = ((torch.rand(1, generator=gen) + torch.arange(b) / b) % 1.0).clamp(min=1e-3)  # (B,)
    masked = torch.rand(b, GEN_LENGTH, generator=gen) < t[:, None]  # (B, L)
    x = torch.cat([batch.prompt, batch.region.masked_fill(masked, mask_id)], dim=1)  # (B, T)
    keep = torch.cat([batch.prompt_mask, torch.ones_like(masked)], dim=1)  # (B, T)
    attn, pos = _bidirectional(keep)
    hidden = network.model(input_ids=x, attention_mask=attn, position_ids=pos).last_hidden_state  # (B, T, H)
    h = hidden[:, -GEN_LENGTH:][masked]  # (N, H)
    ce = F.cross_entropy(network.lm_head(h), batch.region[masked], reduction="none")  # (N,)
    weight = (1.0 / t)[:, None].expand(b, GEN_LENGTH)[masked]  # (N,)
    return (ce * weight).sum() / (b * GEN_LENGTH)


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(network: LlamaForCausalLM, data: Batch, mask_id: int, args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(network.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    n, start, order = data.region.shape[0], time.time(), torch.empty(0, dtype=torch.long)
    network.train()
    for step in range(args.steps):
        if order.numel() < args.batch:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[: args.batch], order[args.batch :]
        width = int(data.prompt_mask[idx].sum(1).max())  # drop all-padding columns: less compute
        batch = Batch(data.prompt[idx, -width:], data.prompt_mask[idx, -width:], data.region[idx])
        for group in opt.param_groups:
            group["lr"] = _lr(step, args.steps, args.lr, args.warmup)
        loss = mdlm_loss(network, batch, mask_id, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        opt.step()
        if step % 200 == 0 or step == args.steps - 1:
            print(f"  step {step:5d}  loss {loss.item():.4f}  {time.time() - start:6.1f}s", flush=True)
    network.eval()


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def answer_text(tok: PreTrainedTokenizerFast, tokens: list[int]) -> str:
    """Generated text: cut at the first EOS, special tokens skipped, stripped."""
    if tok.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tok.eos_token_id)]
    return tok.decode(tokens, skip_special_tokens=True).strip()


def evaluate(folder: Path) -> dict[str, float]:
    """Mean ROUGE-L recall of greedy generations per split (rouge_score, use_stemmer=True), sampled
    by trajcache's own sampler with the tiny preset (16 steps, one block of 32, low confidence)."""
    model = load_model(str(folder), preset="tiny")
    sampler = Sampler(model, load_sampler_preset("tiny"), CaptureConfig(top_k=0), compile=False, batch_size=64)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    out = {}
    for split in SPLITS:
        rows = load_split(split)
        texts = []
        for i in range(0, len(rows), 64):  # bounded memory: logits are (64, 32, V) floats
            pairs = [encode_item(model.tokenizer, r["question"], r["answer"]) for r in rows[i : i + 64]]
            labels = np.full((len(pairs), 1, GEN_LENGTH), -1, dtype=np.int32)
            for n, (_, label) in enumerate(pairs):
                labels[n, 0, : len(label)] = label
            tokens = sampler.run([p for p, _ in pairs], labels, np.zeros(len(pairs), dtype=np.int64))["tokens"]
            texts += [answer_text(model.tokenizer, row.tolist()) for row in tokens]
        recalls = [scorer.score(target=r["answer"], prediction=t)["rougeL"].recall for r, t in zip(rows, texts)]
        out[split] = sum(recalls) / len(recalls)
    return out


# --------------------------------------------------------------------------- main


def save(network: LlamaForCausalLM, tok: PreTrainedTokenizerFast, folder: Path) -> None:
    """float32 when the weights fit in MAX_BYTES, else bfloat16 (then evaluated as loaded back)."""
    fp32_bytes = sum(p.numel() for p in network.parameters()) * 4
    dtype = torch.float32 if fp32_bytes <= MAX_BYTES else torch.bfloat16
    network.to(dtype).save_pretrained(folder)
    network.to(torch.float32)
    tok.save_pretrained(folder)


def _check_bidirectional_path(network: LlamaForCausalLM, tok: PreTrainedTokenizerFast, data: Batch) -> None:
    """The training forward (hidden states -> lm_head) must equal DiffusionModel.forward_logits."""
    batch = Batch(data.prompt[:4], data.prompt_mask[:4], data.region[:4])
    keep = torch.cat([batch.prompt_mask, torch.ones_like(batch.region, dtype=torch.bool)], dim=1)
    x = torch.cat([batch.prompt, batch.region], dim=1)
    attn, pos = _bidirectional(keep)
    with torch.no_grad():
        hidden = network.model(input_ids=x, attention_mask=attn, position_ids=pos).last_hidden_state
        ours = network.lm_head(hidden[:, -GEN_LENGTH:])
        ref = diffusion_model(network, tok, "check").forward_logits(x, keep, GEN_LENGTH)
    torch.testing.assert_close(ours, ref)


def build_one(name: str, tok: PreTrainedTokenizerFast, args: argparse.Namespace) -> None:
    """Initialise (and unless --init-only, train) one model and save it."""
    torch.manual_seed(args.seed)
    network = LlamaForCausalLM(model_config(tok, args)).float()
    data = make_batch(tok, [r for s in TRAIN_SPLITS[name] for r in load_split(s)])
    _check_bidirectional_path(network, tok, data)
    start = time.time()
    if not args.init_only:
        print(f"{name}: {sum(p.numel() for p in network.parameters()):,} params, {data.region.shape[0]} items")
        train(network, data, tok.mask_token_id, args)
    seconds = time.time() - start
    save(network, tok, args.out / name)
    size = (args.out / name / "model.safetensors").stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{name}: model.safetensors is {size} bytes > {MAX_BYTES}")
    print(f"{name}: saved {size / 1e6:.2f} MB, trained {seconds:.0f}s")


def print_table(out: Path, names: list[str]) -> None:
    scores = {name: evaluate(out / name) for name in names}
    print("mean ROUGE-L recall (greedy, gen_length 32, steps 16, low_confidence)")
    print(f"{'split':<14}" + "".join(f"{n:>13}" for n in scores))
    for split in SPLITS:
        print(f"{split:<14}" + "".join(f"{scores[n][split]:>13.3f}" for n in scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init-only", action="store_true", help="save randomly initialised models")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate the saved models")
    parser.add_argument("--models", default="tiny-full,tiny-retain")
    parser.add_argument("--out", type=Path, default=MODELS, help="folder that holds the model folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=MODEL_VOCAB, help="rows of the output layer")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--intermediate", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    if not args.eval_only:
        tok = build_tokenizer()
        print(f"tokenizer: {len(tok)} tokens")
        for name in names:
            build_one(name, tok, args)
    if not args.init_only:
        print_table(args.out, names)


if __name__ == "__main__":
    main()
