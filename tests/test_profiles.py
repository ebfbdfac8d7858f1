"""The workflow profiles hold the per-rule resources (issue 12): no rule declares its own, and every `set-resources`
entry names a rule that exists (Snakemake silently ignores an entry for an unknown rule, so a typo would drop it)."""

import re
from pathlib import Path

import pytest
import yaml
from rule_helpers import rule_scripts

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "workflow/rules").glob("*.smk"))


def rule_names() -> set[str]:
    return set(rule_scripts())


def test_rules_declare_no_resources():
    offenders = [f"{p.name}:{i + 1}" for p in RULE_FILES for i, line in enumerate(p.read_text().splitlines())
                 if re.match(r"\s+resources:", line)]
    assert not offenders, f"per-rule resources belong in profiles/*/config.yaml (set-resources): {offenders}"


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_set_resources_name_existing_rules(profile):
    prof = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    rules = rule_names()
    assert {"train_qnn", "dft_chunk", "study_point"} <= rules  # the parser finds the rules
    unknown = sorted(set(prof["set-resources"]) - rules)
    assert not unknown, f"profiles/{profile}/config.yaml set-resources: unknown rule(s) {unknown}"
    for rule, res in prof["set-resources"].items():
        assert set(res) <= {"mem_mb", "runtime", "slurm_partition", "slurm_account", "cpus_per_task"}, (rule, res)


def test_default_profile_values_from_the_benchmarks():
    prof = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert prof["default-resources"] == {"mem_mb": 500, "runtime": 5}
    assert prof["set-resources"]["train_qnn"] == {"mem_mb": 900, "runtime": 15}


def test_the_rule_that_may_submit_to_ibm_hardware_is_never_retried():
    """Issue 26, item 22: profiles/slurm retries a failed job (`retries`), and a retry of a job that submitted to an
    IBM QPU would submit again (the QPU-time cap applies per attempt). A rule's own `retries:` wins over the profile's
    (Snakemake's Rule.restart_times), so the rule that can reach Qiskit Runtime says `retries: 0`."""
    # the one stage function that builds a RuntimeEvaluator, and the scripts (hence rules) that call it
    users = [p.relative_to(REPO).as_posix() for p in (REPO / "src/qnnff").rglob("*.py")
             if re.search(r"RuntimeEvaluator(\.from_settings)?\(", p.read_text()) and p.name != "runtime.py"]
    assert users == ["src/qnnff/stages/evaluate.py"], users
    scripts = {p.stem for p in (REPO / "workflow/scripts").glob("*.py") if "aer_evaluation(" in p.read_text()}
    hardware_rules = {r for r, (_, script) in rule_scripts().items() if script in scripts}
    assert hardware_rules == {"aer_evaluation"}
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert slurm["retries"] >= 1  # the profile does retry other rules
    assert not set(hardware_rules) & set(slurm.get("preemptible-rules") or [])  # preemptible retries would win
    for rule in hardware_rules:
        stem = rule_scripts()[rule][0]
        block = re.search(rf"^rule {rule}:\n(.*?)(?=^\S|\Z)", (REPO / f"workflow/rules/{stem}.smk").read_text(), re.M | re.S)
        assert block and re.search(r"^    retries: 0$", block.group(1), re.M), f"rule {rule} needs `retries: 0`"
