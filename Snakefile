# qnnff: quantum-neural-network force fields, from DFT reference data to the paper's figures and tables.
#   snakemake --cores 2                         # the paper's scope (default target `all`)
#   snakemake --cores 2 extended                # everything: also sGDML, Aer, shot-noise MD (results/extended/)
#   snakemake --cores 2 --until features        # one stage (stage targets below)
#   snakemake --cores 2 results/H2O/data/train.extxyz   # one file
#   snakemake --cores 2 studies                 # the studies of config/studies.yaml (not part of `all`)
import os

from snakemake.utils import min_version

min_version("9.0")


from qnnff.config import load_yaml

# the paper config, found next to this Snakefile also when the run goes to another directory (`--directory runs/paper`)
PAPER_CONFIG = os.path.join(workflow.basedir, "config", "config.yaml")
load_yaml(PAPER_CONFIG)  # a YAML error names file, line and column; Snakemake's own message does not
# the committed studies (README "Studies"); like the paper config, replaced by --configfile
STUDIES_CONFIG = os.path.join(workflow.basedir, "config", "studies.yaml")
load_yaml(STUDIES_CONFIG)


configfile: PAPER_CONFIG
configfile: STUDIES_CONFIG


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/md.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/studies.smk"


# cheap rules run on the submitting host, never as cluster jobs
localrules:
    all,
    extended,
    data,
    features,
    train,
    evaluate,
    md,
    figures,
    errors_table,
    md_table,
    figures_system,
    figure_md,
    figures_summary,
    metrics,
    select_seeds,
    reproduction_table,
    study_table,
    data_efficiency,
    studies,


# ------------------------------------------------------------------ stage targets
rule data:
    """Stage 1: reference datasets (PySCF energies and forces) and their DFT reports."""
    input:
        expand("results/{system}/data/{split}.extxyz", system=SYSTEMS, split=["train", "test"]),
        expand("results/{system}/data/dft_report.md", system=SYSTEMS),


rule features:
    """Stage 2: scaled internal coordinates, feature maps and their Jacobians."""
    input:
        expand("results/{system}/features/{name}", system=SYSTEMS, name=["scalers.json", "train.npz", "test.npz"]),


rule train:
    """Stage 3: every configured model of the paper's scope (qnnff.kinds.ModelKind.paper), trained, with test-set predictions."""
    input:
        seed_files("model.zip"),
        seed_files("test_predictions.extxyz"),
        variant_files("seeds.json"),


rule evaluate:
    """Stage 4: error tables (test set, every seed), effective dimensions, information floors and the reproduction scorecard."""
    input:
        expand("results/tables/{system}_errors.{ext}", system=SYSTEMS, ext=["csv", "md"]),
        kind_files("effective_dimension.json"),
        kind_files("information_floor.json"),
        ["results/tables/reproduction.md"] if REPRODUCTION else [],


rule md:
    """Stage 5: molecular dynamics driven by every model of the paper's scope (and DFT where configured)."""
    input:
        md_files("trajectory.extxyz"),
        "results/tables/md.md",


rule figures:
    """Stage 6: every figure, the metrics and the manifest of committed results."""
    input:
        figure_files(),
        "results/metrics.json",
        "results/MANIFEST.sha256",


rule studies:
    """Studies: every configured study's table and figure (results/studies/{study}/); not part of `all`."""
    input:
        expand("results/studies/{study}/{name}", study=list(STUDIES), name=["table.csv", "table.md", "figure.png", "figure.pdf"]),
        expand(
            "results/studies/{system}_data/{name}",
            system=list(DATA_GROUPS),
            name=["table.csv", "table.md", "figure.png", "figure.pdf"],
        ),


# ------------------------------------------------------------------ default target
rule all:
    default_target: True
    input:
        rules.data.input,
        rules.features.input,
        rules.train.input,
        rules.evaluate.input,
        rules.md.input,
        rules.figures.input,


rule extended:
    """Everything configured (README "Targets"): the default target, and the kinds beyond the paper (sGDML), the QNN on
    qiskit-aer and the shot-noise MD, with every table and figure over all of them under results/extended/."""
    input:
        rules.all.input,
        seed_files("model.zip", scope="extended/"),
        seed_files("test_predictions.extxyz", scope="extended/"),
        kind_files("effective_dimension.json", scope="extended/"),
        kind_files("information_floor.json", scope="extended/"),
        aer_files(scope="extended/"),
        md_files("trajectory.extxyz", scope="extended/"),
        table_files("extended/"),
        figure_files("extended/"),
        "results/extended/metrics.json",
        "results/extended/MANIFEST.sha256",
