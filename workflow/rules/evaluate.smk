# Stage 4: evaluation. Errors on the held-out test set and the normalised effective dimension.


rule effective_dimension:
    """Normalised effective dimension d_n/d (Abbas et al. 2021) of one trained model, and its curve over n."""
    input:
        model="results/{system}/models/{kind}/model.zip",
        train="results/{system}/features/train.npz",
    output:
        "results/{system}/models/{kind}/effective_dimension.json",
    params:
        settings=lambda wc: config.get("effective_dimension", {}),
    log:
        log_path("effective_dimension", "{system}", "{kind}"),
    benchmark:
        bench_path("effective_dimension", "{system}", "{kind}")
    threads: 1
    resources:
        mem_mb=800,  # measured peak RSS x 1.5 (benchmarks/resources_from_benchmarks.py)
        runtime=5,  # minutes; measured wall time x 3, at least 5
    conda:
        "../../envs/qnnff.yaml"
    script:
        "../scripts/effective_dimension.py"


rule aer_evaluation:
    """The trained QNN on qiskit-aer: test energies and parameter-shift forces with a finite number of shots (and the
    configured noise model); with models.qnn.hardware.backend set, also through IBM Qiskit Runtime (cost first, capped)."""
    input:
        model="results/{system}/models/qnn/model.zip",
        test="results/{system}/features/test.npz",
    output:
        "results/{system}/models/qnn/aer_evaluation.json",
    params:
        settings=lambda wc: config["systems"][wc.system]["models"]["qnn"].get("aer", {}),
        hardware=lambda wc: config["systems"][wc.system]["models"]["qnn"].get("hardware", {}),
    log:
        log_path("aer_evaluation", "{system}"),
    benchmark:
        bench_path("aer_evaluation", "{system}")
    threads: 1
    resources:
        mem_mb=1100,  # measured peak RSS with parameter-shift forces: 683-693 MB (LiH, H2O, H3O+) x 1.5
        runtime=7,  # minutes; measured 13 s (LiH), 69 s (H2O, 3 force points), 124 s (H3O+) x 3
    conda:
        "../../envs/qnnff.yaml"
    script:
        "../scripts/aer_evaluation.py"


rule errors_table:
    """The paper's table for one system: RMSE(E), RMSE(F) (scaled and meV, meV/A), d_n/d and d per model."""
    input:
        predictions=lambda wc: model_files("test_predictions.extxyz", [wc.system]),
        summaries=lambda wc: model_files("train_summary.json", [wc.system]),
        effdims=lambda wc: model_files("effective_dimension.json", [wc.system]),
        scalers="results/{system}/features/scalers.json",
        aer=lambda wc: ["results/{system}/models/qnn/aer_evaluation.json"] if "qnn" in MODELS[wc.system] else [],
    output:
        csv=report("results/tables/{system}_errors.csv", caption="../report/errors_table.rst", category="Tables"),
        md=report("results/tables/{system}_errors.md", caption="../report/errors_table.rst", category="Tables"),
    params:
        kinds=lambda wc: MODELS[wc.system],
    log:
        log_path("errors_table", "{system}"),
    benchmark:
        bench_path("errors_table", "{system}")
    threads: 1
    resources:
        mem_mb=500,  # measured peak RSS x 1.5 (benchmarks/resources_from_benchmarks.py)
        runtime=5,  # minutes; measured wall time x 3, at least 5
    conda:
        "../../envs/qnnff.yaml"
    script:
        "../scripts/errors_table.py"
