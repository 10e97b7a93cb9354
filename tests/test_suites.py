"""Suites: the tofu bindings, embedded and user sources, suite files and their validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from trajcache.data import encode_split
from trajcache.errors import ConfigError
from trajcache.suites import MetricBinding, SplitSpec, SuiteConfig, load_splits, load_suite, resolve_source

REPO = Path(__file__).resolve().parents[1]
TOFU_DATA = REPO.parent / "shared" / "tofu" / "data"
EMBEDDED_DATA = REPO / "trajcache" / "embedded" / "data"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(REPO / "trajcache" / "embedded" / "models" / "tiny-full")


TOFU_METRICS = {
    "forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "forget_quality", "extraction_strength",
    "exact_memorization", "mia_min_k", "privleak", "retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio", "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE",
    "wf_Truth_Ratio", "model_utility",
}


def test_tofu_suite_bindings() -> None:
    suite = load_suite("tofu")
    assert list(suite.splits) == ["forget", "retain", "holdout", "real_authors", "world_facts"]
    assert suite.splits["holdout"].roles == ("answer",)
    assert suite.splits["real_authors"].roles == ("answer", "perturbed")
    assert set(suite.metrics) == TOFU_METRICS
    tr = suite.metrics["forget_truth_ratio"]
    assert (tr.metric, tr.splits, tr.args) == ("truth_ratio", {"main": "forget"}, {"aggregator": "closer_to_1"})
    assert tr.roles == {"correct": "paraphrase", "perturbed": "perturbed"}
    assert suite.metrics["ra_Truth_Ratio"].roles["correct"] == "answer"
    assert suite.metrics["wf_Truth_Ratio"].args == {"aggregator": "true_better"}
    assert suite.metrics["privleak"].splits == {"members": "forget", "nonmembers": "holdout"}
    assert suite.metrics["mia_min_k"].args == suite.metrics["privleak"].args == {"k": 0.4}
    assert suite.metrics["forget_Q_A_ROUGE"].args == {"rouge_type": "rougeL"}
    utility = suite.metrics["model_utility"]
    assert utility.splits == {} and len(utility.args["components"]) == 9
    assert set(utility.args["components"]) == {n for n in TOFU_METRICS if n.startswith(("retain_", "ra_", "wf_"))}
    assert SuiteConfig.from_dict(suite.to_dict()) == suite


def test_tofu_suite_loads_embedded_splits(tokenizer: PreTrainedTokenizerFast) -> None:
    suite = load_suite("tofu")
    splits = load_splits(suite)
    assert [s.name for s in splits] == list(suite.splits)
    assert Path(splits[0].source) == EMBEDDED_DATA / "forget.json"
    by_name = {s.name: s for s in splits}
    assert len(by_name["forget"].roles) == 7 and by_name["holdout"].roles == ("answer",)
    assert all(len(s.items) > 0 for s in splits)
    encoded = encode_split(by_name["forget"], tokenizer, suite.prompt_template)
    assert all(e.labels["answer"][-1] == tokenizer.eos_token_id for e in encoded)


def test_source_overrides_and_subsets() -> None:
    suite = load_suite("tofu", {"real_authors": str(TOFU_DATA / "real_authors_perturbed.json")})
    (split,) = load_splits(suite, ["real_authors"], limit=None)
    assert len(split.items) == 100 and split.source == str(TOFU_DATA / "real_authors_perturbed.json")
    assert len(load_splits(suite, ["real_authors"], limit=7)[0].items) == 7
    with pytest.raises(ConfigError, match=r"no split \['forgett'\]; available: .*'forget'"):
        load_suite("tofu", {"forgett": "x.json"})
    with pytest.raises(ConfigError, match=r"no split \['nope'\]"):
        load_splits(suite, ["nope"])


def test_unknown_suite_lists_available() -> None:
    with pytest.raises(ConfigError, match=r"suite preset 'tofo' is unknown; available: \['tofu'"):
        load_suite("tofo")
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite("missing/suite.toml")


def test_resolve_source() -> None:
    assert resolve_source("embedded:retain.json") == EMBEDDED_DATA / "retain.json"
    assert resolve_source("hf:locuslab/TOFU:retain_perturbed") == "hf:locuslab/TOFU:retain_perturbed"
    assert resolve_source("data/x.json") == Path("data/x.json")


SUITE_TOML = """
prompt_template = "Q: {question}"
[splits.a]
source = "a.json"
roles = ["answer", "perturbed"]
[metrics.m]
metric = "truth_ratio"
splits = { main = "a" }
roles = { correct = "answer", perturbed = "perturbed" }
"""


def test_suite_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(SUITE_TOML)
    suite = load_suite(str(path))
    assert suite.name == "mine" and suite.prompt_template == "Q: {question}"
    roles = {"correct": "answer", "perturbed": "perturbed"}
    assert suite.metrics["m"] == MetricBinding("m", "truth_ratio", {"main": "a"}, roles, {})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('main = "a"', 'main = "b"'), r"slot 'main' names split 'b', which the suite does not define"),
        (('correct = "answer"', 'correct = "paraphrase"'), r"needs roles \['paraphrase'\] that split 'a' does not"),
        (('correct = "answer"', 'correct = "truth"'), r"roles \['truth'\] are unknown"),
        (('roles = ["answer", "perturbed"]', 'roles = ["perturbed", "answer"]'), "must be in the order"),
        (('roles = ["answer", "perturbed"]', 'roles = ["answer", "x"]'), r"roles \['answer', 'x'\] are invalid"),
        (('metric = "truth_ratio"', 'metric = "truth_ratio"\nweight = 2'), r"binding 'm': unknown keys \['weight'\]"),
        (('source = "a.json"', 'source = "a.json"\nformat = "x"'), r"split 'a': unknown keys \['format'\]"),
        (('prompt_template = "Q: {question}"', 'prompt_template = "{q}"'), r"\{question\}; got fields \['q'\]"),
        (('[splits.a]', 'title = "x"\n[splits.a]'), r"unknown keys \['title'\]"),
        (('roles = ["answer", "perturbed"]', ''), r"roles \[\] are invalid"),
        (('metric = "truth_ratio"', 'metric = ""'), "'metric' must name a metric function"),
        (('prompt_template', 'prompt_template = ['), "invalid TOML"),
    ],
)
def test_invalid_suites(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = tmp_path / "bad.toml"
    assert edit[0] in SUITE_TOML
    path.write_text(SUITE_TOML.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError, match=message):
        load_suite(str(path))


def test_suite_needs_splits() -> None:
    with pytest.raises(ConfigError, match="defines no splits"):
        SuiteConfig(name="x", prompt_template=None, splits={}, metrics={})
    spec = SplitSpec("a", "a.json", ("answer",))
    assert SplitSpec.from_dict("a", spec.to_dict()) == spec
