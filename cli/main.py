"""The `trajcache` command: parse options, call the library, render. No logic of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from transformers.utils import logging as hf_logging

from trajcache.config import CaptureConfig
from trajcache.errors import ConfigError
from trajcache.record import ModelRequest, RecordRequest, record_run
from trajcache.results import write_results
from trajcache.score import ScoreRequest, score_run
from trajcache.store import describe_run, verify_run

from .analysis import register as register_analysis
from .render import SplitProgress, console, kv_table, results_table, user_errors

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Record diffusion-LM denoising trajectories once; score trajectory metrics from the store.",
)

# Shared options of the commands that name a model and a suite (record; score's cache lookup).
ModelOpt = Annotated[str, typer.Option("--model", help="Embedded name (tiny-full, tiny-retain), HF directory or hub id.")]
SuiteOpt = Annotated[str, typer.Option("--suite", help="Suite name (configs/suites) or TOML path.")]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Run cache (default $TRAJCACHE_HOME or ./runs).")]


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _sources(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        split, sep, path = pair.partition("=")
        if not sep or not split or not path:
            raise ConfigError(f"--data {pair!r}: expected SPLIT=PATH, e.g. forget=/data/forget10_perturbed.json")
        out[split] = path
    return out


@app.command()
def record(
    model: ModelOpt = "tiny-full",
    suite: SuiteOpt = "tofu",
    splits: Annotated[Optional[str], typer.Option(help="Comma-separated splits (default: all of the suite).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="First N items of each split.")] = None,
    data: Annotated[list[str], typer.Option("--data", help="SPLIT=PATH: read a split from your file.")] = [],  # noqa: B006
    out: Annotated[Optional[Path], typer.Option(help="Run path (default: in the cache, named by fingerprint).")] = None,
    cache_dir: CacheOpt = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model preset's).")] = None,
    gen_length: Annotated[Optional[int], typer.Option(help="Generated positions L.")] = None,
    block_length: Annotated[Optional[int], typer.Option(help="Semi-autoregressive block length.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="0 = greedy; > 0 Gumbel-max with per-item seeds.")] = None,
    remasking: Annotated[Optional[str], typer.Option(help="low_confidence | random | margin | entropy.")] = None,
    cfg_scale: Annotated[Optional[float], typer.Option(help="LLaDA unsupervised classifier-free guidance.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="unguided | guided (teacher-force --target-role).")] = None,
    target_role: Annotated[Optional[str], typer.Option(help="Role written at chosen positions in guided mode.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Base of the per-item seeds.")] = None,
    top_k: Annotated[int, typer.Option(min=0, help="Top-k tokens kept per step and position (0 = none).")] = 8,
    topk_bits: Annotated[int, typer.Option(help="Mantissa bits of stored top-k log-probs (7 = bfloat16, 23 = exact).")] = 7,
    capture_logits: Annotated[bool, typer.Option(help="Also store full-vocabulary log-probs (small vocabularies only).")] = False,
    alignment: Annotated[Optional[str], typer.Option(help="same (LLaDA, MDLM) | shift (Dream).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Model preset (configs/models): tiny, llada, dream.")] = None,
    mask_token_id: Annotated[Optional[int], typer.Option(help="Mask token id (default: preset or tokenizer).")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own modeling code (LLaDA, Dream).")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16.")] = "float32",
    no_compile: Annotated[bool, typer.Option("--no-compile", help="Run the denoising step eagerly.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run recorded from other inputs.")] = False,
) -> None:
    """Sample every item once and store its per-step tables (resumes an interrupted run)."""
    flags = {
        "steps": steps, "gen_length": gen_length, "block_length": block_length, "temperature": temperature,
        "remasking": remasking, "cfg_scale": cfg_scale, "mode": mode, "target_role": target_role, "seed": seed,
    }
    hf_logging.disable_progress_bar()  # the split bars below are the progress to show
    with user_errors():
        request = RecordRequest(
            model=ModelRequest(model, preset, mask_token_id, alignment, dtype, device, trust_remote_code),
            suite=suite,
            sources=_sources(data),
            splits=_csv(splits),
            limit=limit,
            sampler_overrides={k: v for k, v in flags.items() if v is not None},
            capture=CaptureConfig(top_k=top_k, topk_bits=topk_bits, logits=capture_logits),
            out=out,
            cache_dir=cache_dir,
            batch_size=batch_size,
            compile=not no_compile,
            overwrite=overwrite,
        )
        with SplitProgress() as progress:
            summary = record_run(request, progress)
    if summary.cache_hit:
        console.print(f"cache hit: {summary.path} already holds this run (fingerprint {summary.fingerprint[:12]}); nothing sampled")
        return
    rate = summary.sampled / summary.seconds if summary.seconds else 0.0
    console.print(
        f"recorded {summary.sampled} items ({', '.join(f'{k} {v}' for k, v in summary.items.items())}) "
        f"in {summary.seconds:.1f} s ({rate:.1f} items/s) -> {summary.path} (fingerprint {summary.fingerprint[:12]})"
    )


@app.command()
def score(
    run: Annotated[Optional[Path], typer.Argument(help="A recorded run (RUN.zarr). Omit with --model to use the cache.")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated metric names (suite names, metric@split).")] = None,
    all_metrics: Annotated[bool, typer.Option("--all", help="Every metric of the run's suite (the default).")] = False,
    reference: Annotated[Optional[Path], typer.Option(help="Reference (retain-model) run for forget_quality and privleak.")] = None,
    plugin: Annotated[list[Path], typer.Option(help="Python file whose @metric functions register metrics.")] = [],  # noqa: B006
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write results JSON here.")] = None,
    per_item: Annotated[bool, typer.Option(help="Keep per-item values in the results.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write per-step PNG curves into this folder.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing results file.")] = False,
    model: Annotated[Optional[str], typer.Option(help="Find the run for this model in the cache.")] = None,
    reference_model: Annotated[Optional[str], typer.Option(help="Find the reference run for this model in the cache.")] = None,
    suite: SuiteOpt = "tofu",
    cache_dir: CacheOpt = None,
    record_missing: Annotated[bool, typer.Option(help="With --model: record runs the cache lacks first.")] = False,
) -> None:
    """Compute metrics from a recorded run, without the model."""
    with user_errors():
        if metrics and all_metrics:
            raise ConfigError("pass either --metrics or --all, not both")
        if reference and reference_model:
            raise ConfigError("pass either --reference or --reference-model, not both")
        path = run or _cached_run(model, suite, cache_dir, record_missing)
        if reference_model:
            reference = _cached_run(reference_model, suite, cache_dir, record_missing)
        if output and output.exists() and not overwrite:
            raise ConfigError(f"{output} exists; pass --overwrite to replace it")
        request = ScoreRequest(path, _csv(metrics), reference, tuple(plugin), per_item)
        with SplitProgress("items") as progress:
            results = score_run(request, progress)
        if output:
            write_results(results, output, overwrite=overwrite)
        if plot:
            from trajcache.report import plot_results

            plot_results(results, plot)
    console.print(results_table(results))
    for name, why in results.skipped.items():
        console.print(f"[yellow]skipped[/yellow] {name}: {why}")
    for warning in results.warnings:
        console.print(f"[yellow]warning[/yellow] {warning}")


def _cached_run(model: str | None, suite: str, cache_dir: Path | None, record_missing: bool) -> Path:
    from trajcache.record import find_cached_run

    if model is None:
        raise ConfigError("give a RUN path, or --model (with --suite) to find the run in the cache")
    request = RecordRequest(model=ModelRequest(model), suite=suite, cache_dir=cache_dir)
    path = find_cached_run(request)
    if path is not None:
        return path
    if not record_missing:
        raise ConfigError(f"no cached run of {model!r} on suite {suite!r}; record it, or pass --record-missing")
    with SplitProgress() as progress:
        return record_run(request, progress).path


@app.command()
def info(
    run: Annotated[Path, typer.Argument(help="A recorded run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fingerprint, provenance, splits, shapes, bytes on disk and completeness of a run."""
    with user_errors():
        description = describe_run(run)
    if as_json:
        typer.echo(json.dumps(description, indent=1))
        return
    rows = [(k, str(v)) for k, v in description.items() if k not in ("splits", "provenance")]
    console.print(kv_table(str(run), rows))
    for name, split in description["splits"].items():
        console.print(kv_table(f"split {name}", [(k, str(v)) for k, v in split.items()]))


@app.command()
def verify(run: Annotated[Path, typer.Argument(help="A recorded run.")]) -> None:
    """Decode every committed chunk and check its checksum; exit 1 naming bad shards."""
    with user_errors():
        report = verify_run(run)
    if report.ok:
        console.print(f"ok: {run} verified")
        return
    for bad in report.bad:
        typer.echo(f"bad: split {bad.split!r} shard {bad.shard} field {bad.field}: {bad.reason}", err=True)
    for split, shard in report.missing:
        typer.echo(f"missing: split {split!r} shard {shard} has no commit marker (run record again to resume)", err=True)
    raise typer.Exit(1)


register_analysis(app)


def main() -> None:
    app()
