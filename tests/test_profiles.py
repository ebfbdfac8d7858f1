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
