# Studies (config `studies:`, qnnff.studies): one job per (study, grid point, seed), then one table and figure per study.
# The reference data are the pipeline's; a point equal to the base protocol on the full data reuses the pipeline's
# trained model of the same seed. Every point is named by a slug of its settings, so adding a grid value adds jobs
# and leaves the finished points alone.
from qnnff.studies import parse_studies, reuses_pipeline_model

STUDIES = parse_studies(config)


wildcard_constraints:
    study="|".join(re.escape(s) for s in STUDIES) or "no-study",
    point=r"[A-Za-z0-9._+=-]+",


def study_pipeline_files(wc):
    """The pipeline's model of the same seed, for a point that would train exactly that model."""
    st = STUDIES[wc.study]
    pt = st.point(wc.point)
    if not reuses_pipeline_model(config, st, pt) or int(wc.seed) not in SEEDS_OF[st.kind]:
        return {}
    base = Variant(st.system, st.kind, st.protocol).model_dir(int(wc.seed))
    return {
        "model": f"{base}/model.zip",
        "predictions": f"{base}/test_predictions.extxyz",
        "summary": f"{base}/train_summary.json",
    }


rule study_point:
    """One seed of one grid point of a study: trained on the pipeline's reference data (or the pipeline's model reused),
    evaluated on the test set and, where configured, with shots on qiskit-aer."""
    input:
        unpack(study_pipeline_files),
        train=lambda wc: f"results/{STUDIES[wc.study].system}/data/train.extxyz",
        test=lambda wc: f"results/{STUDIES[wc.study].system}/data/test.extxyz",
    output:
        "results/studies/{study}/{point}/seed{seed}/metrics.json",
    log:
        log_path("study_point", "{study}", "{point}", "{seed}"),
    benchmark:
        bench_path("study_point", "{study}", "{point}", "{seed}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("study_point"),
    script:
        "../scripts/study_point.py"


rule study_table:
    """The study's table (one row per point and seed; mean +- sd per point; fitted data-efficiency slopes; shots) and figure."""
    input:
        lambda wc: STUDIES[wc.study].metrics_files(),
    output:
        csv="results/studies/{study}/table.csv",
        md=report("results/studies/{study}/table.md", caption="../report/study.rst", category="Studies", subcategory="{study}"),
        png=report("results/studies/{study}/figure.png", caption="../report/study.rst", category="Studies", subcategory="{study}"),
        pdf="results/studies/{study}/figure.pdf",
    log:
        log_path("study_table", "{study}"),
    benchmark:
        bench_path("study_table", "{study}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("study_table"),
    script:
        "../scripts/study_table.py"


def data_study_groups():
    """system -> {kind: study} of the pure data-efficiency studies (one axis, n_train) of systems with two or more."""
    groups = {}
    for name, st in STUDIES.items():
        if tuple(st.grid_keys) == ("n_train",):
            groups.setdefault(st.system, {}).setdefault(st.kind, name)
    return {s: g for s, g in groups.items() if len(g) >= 2}


DATA_GROUPS = data_study_groups()


rule data_efficiency:
    """Every model kind's data-efficiency study of one system on one log-log figure, with their fitted slopes."""
    input:
        lambda wc: [f"results/studies/{s}/table.csv" for s in DATA_GROUPS[wc.system].values()],
    output:
        csv="results/studies/{system}_data/table.csv",
        md=report(
            "results/studies/{system}_data/table.md",
            caption="../report/study.rst",
            category="Studies",
            subcategory="data efficiency",
        ),
        png=report(
            "results/studies/{system}_data/figure.png",
            caption="../report/study.rst",
            category="Studies",
            subcategory="data efficiency",
        ),
        pdf="results/studies/{system}_data/figure.pdf",
    log:
        log_path("data_efficiency", "{system}"),
    benchmark:
        bench_path("data_efficiency", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        tables=lambda wc: {k: f"results/studies/{s}/table.csv" for k, s in DATA_GROUPS[wc.system].items()},
    script:
        "../scripts/data_efficiency.py"
