# Stage 4: evaluation. Errors on the held-out test set (every seed), the normalised effective dimension (per model
# kind, over Monte-Carlo draws), the median-seed QNN on qiskit-aer, and the reproduction scorecard.


def first_seed_model(wc):
    """Any trained model of the kind: the effective dimension draws its parameters, so the weights play no role."""
    v = next(v for v in VARIANTS[wc.system] if v.kind == wc.kind)
    return f"{v.model_dir(0)}/model.zip"


rule effective_dimension:
    """Normalised effective dimension d_n/d (Abbas et al. 2021) of one model kind, mean +- sd over draws, and its curve over n."""
    input:
        model=first_seed_model,
        train="results/{system}/features/train.npz",
    output:
        "results/{system}/models/{kind}/effective_dimension.json",
    log:
        log_path("effective_dimension", "{system}", "{kind}"),
    benchmark:
        bench_path("effective_dimension", "{system}", "{kind}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("effective_dimension"),
    script:
        "../scripts/effective_dimension.py"


rule information_floor:
    """The information floor of one model kind's inputs: test RMSE(E) of a Gaussian process on the inputs the model sees."""
    input:
        model=first_seed_model,
        train="results/{system}/features/train.npz",
        test="results/{system}/features/test.npz",
    output:
        "results/{system}/models/{kind}/information_floor.json",
    log:
        log_path("information_floor", "{system}", "{kind}"),
    benchmark:
        bench_path("information_floor", "{system}", "{kind}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("information_floor"),
    script:
        "../scripts/information_floor.py"


rule aer_evaluation:
    """The median-seed QNN of one protocol with circuits: test energies and parameter-shift forces on qiskit-aer with a
    finite number of shots (and the configured noise model); with models.qnn.hardware.backend set, also through IBM
    Qiskit Runtime (cost first, capped)."""
    input:
        models=lambda wc: set_inputs([seed_set(wc.system, "qnn", wc.protocol, "model.zip")]),
        test="results/{system}/features/test.npz",
    output:
        "results/{system}/models/qnn/{protocol}/aer_evaluation.json",
    log:
        log_path("aer_evaluation", "{system}", "{protocol}"),
    benchmark:
        bench_path("aer_evaluation", "{system}", "{protocol}")
    # never retried (this wins over the `retries` of a profile, e.g. profiles/slurm): with a real backend a retry would
    # submit to the QPU again, and the QPU-time cap (hardware.max_qpu_seconds) applies per attempt
    retries: 0
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        models=lambda wc: seed_set(wc.system, "qnn", wc.protocol, "model.zip"),
        settings=settings("aer_evaluation"),
    script:
        "../scripts/aer_evaluation.py"


rule errors_table:
    """The paper's table for one system: one CSV row per seed; Markdown mean +- sd of RMSE(E), RMSE(F) (scaled, meV, meV/A), d_n/d, d."""
    input:
        selections=lambda wc: variant_files("seeds.json", [wc.system], scope=wc.scope),
        effdims=lambda wc: kind_files("effective_dimension.json", [wc.system], scope=wc.scope),
        floors=lambda wc: kind_files("information_floor.json", [wc.system], scope=wc.scope),
        scalers="results/{system}/features/scalers.json",
        aer=lambda wc: aer_files([wc.system], scope=wc.scope),
    output:
        csv=report("results/{scope}tables/{system}_errors.csv", caption="../report/errors_table.rst", category="Tables"),
        md=report("results/{scope}tables/{system}_errors.md", caption="../report/errors_table.rst", category="Tables"),
    log:
        log_path("errors_table", "{scope}{system}"),
    benchmark:
        bench_path("errors_table", "{scope}{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        effdims=lambda wc: {
            k: f"results/{wc.system}/models/{k}/effective_dimension.json"
            for k in kinds_with("effective_dimension.json", wc.system, wc.scope)
        },
        floors=lambda wc: {k: f"results/{wc.system}/models/{k}/information_floor.json" for k in scope_models(wc.system, wc.scope)},
    script:
        "../scripts/errors_table.py"


def period_runs():
    mp = config["reproduction"].get("md_period")
    if not mp:
        return []
    s, k = mp["system"], mp.get("kind", "qnn")
    return [
        f"{md_dir(s, k, config['reproduction'].get('protocol', 'best'))}/trajectory.extxyz",
        f"{md_dir(s, 'dft', None)}/trajectory.extxyz",
    ]


def scorecard_systems(scope):
    """The systems of the paper's tables, and every system with an sGDML or invariant QNN in the scope (their rows)."""
    paper = list(config["reproduction"]["paper"])
    return paper + [s for s in SYSTEMS if s not in paper and {"sgdml", "eqnn"} & set(scope_models(s, scope))]


rule reproduction_table:
    """The reproduction scorecard: every number of the paper's tables beside ours (mean +- sd), ratio and verdict."""
    input:
        errors=lambda wc: [f"results/{wc.scope}tables/{s}_errors.csv" for s in scorecard_systems(wc.scope)],
        effdims=lambda wc: kind_files("effective_dimension.json", list(config["reproduction"]["paper"]), scope=wc.scope),
        md=lambda wc: md_files("summary.json", scope=wc.scope),
        period=lambda wc: period_runs(),
    output:
        csv=report("results/{scope}tables/reproduction.csv", caption="../report/reproduction.rst", category="Tables"),
        md=report("results/{scope}tables/reproduction.md", caption="../report/reproduction.rst", category="Tables"),
    log:
        log_path("reproduction_table", "{scope}all"),
    benchmark:
        bench_path("reproduction_table", "{scope}all")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        errors=lambda wc: {s: f"results/{wc.scope}tables/{s}_errors.csv" for s in scorecard_systems(wc.scope)},
        effdims=lambda wc: [
            [s, k, f"results/{s}/models/{k}/effective_dimension.json"]
            for s in config["reproduction"]["paper"]
            for k in kinds_with("effective_dimension.json", s, wc.scope)
        ],
        settings=settings("reproduction_table"),
    script:
        "../scripts/reproduction_table.py"
