# Stage 3: models. One rule per model kind (train_qnn, train_nn, train_bpnn), one job per (system, protocol, seed);
# they share one script. A killed training resumes from its checkpoint (params.checkpoint, not an output, so
# Snakemake keeps it); the model file itself is written atomically at the end. `select_seeds` gathers the seeds of
# one (kind, protocol): per-seed test errors, mean +- sd and the median seed that figures, MD and Aer use.


def model_outputs(kind):
    base = "results/{system}/models/" + kind + "/{protocol}/seed{seed}/"
    return dict(
        model=base + "model.zip",
        predictions=base + "test_predictions.extxyz",
        curve=base + "learning_curve.csv",
        summary=base + "train_summary.json",
    )


rule train_qnn:
    """Train one seed of the QNN (a Qiskit circuit run by qnnff's exact torch statevector engine) under one protocol."""
    input:
        scalers="results/{system}/features/scalers.json",
        train="results/{system}/features/train.npz",
        test="results/{system}/features/test.npz",
    output:
        **model_outputs("qnn"),
    log:
        log_path("train_qnn", "{system}", "{protocol}", "{seed}"),
    benchmark:
        bench_path("train_qnn", "{system}", "{protocol}", "{seed}")
    priority: 10  # the QNN trainings are the longest jobs: start them as soon as their features exist
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        kind="qnn",
        protocol=lambda wc: wc.protocol,
        seed=lambda wc: int(wc.seed),
        settings=settings("train", kind="qnn"),
        checkpoint="results/{system}/models/qnn/{protocol}/seed{seed}/checkpoint.pt",
    script:
        "../scripts/train.py"


use rule train_qnn as train_nn with:
    output:
        **model_outputs("nn"),
    log:
        log_path("train_nn", "{system}", "{protocol}", "{seed}"),
    benchmark:
        bench_path("train_nn", "{system}", "{protocol}", "{seed}")
    priority: 0
    params:
        kind="nn",
        protocol=lambda wc: wc.protocol,
        seed=lambda wc: int(wc.seed),
        settings=settings("train", kind="nn"),
        checkpoint="results/{system}/models/nn/{protocol}/seed{seed}/checkpoint.pt",


use rule train_qnn as train_bpnn with:
    output:
        **model_outputs("bpnn"),
    log:
        log_path("train_bpnn", "{system}", "{protocol}", "{seed}"),
    benchmark:
        bench_path("train_bpnn", "{system}", "{protocol}", "{seed}")
    priority: 0
    params:
        kind="bpnn",
        protocol=lambda wc: wc.protocol,
        seed=lambda wc: int(wc.seed),
        settings=settings("train", kind="bpnn"),
        checkpoint="results/{system}/models/bpnn/{protocol}/seed{seed}/checkpoint.pt",


rule select_seeds:
    """Per-seed test errors of one (system, kind, protocol), their mean +- sd and the median seed."""
    input:
        predictions=lambda wc: seed_set(wc.system, wc.kind, wc.protocol, "test_predictions.extxyz")["files"],
        summaries=lambda wc: seed_set(wc.system, wc.kind, wc.protocol, "train_summary.json")["files"],
        scalers="results/{system}/features/scalers.json",
    output:
        "results/{system}/models/{kind}/{protocol}/seeds.json",
    log:
        log_path("select_seeds", "{system}", "{kind}", "{protocol}"),
    benchmark:
        bench_path("select_seeds", "{system}", "{kind}", "{protocol}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    script:
        "../scripts/select_seeds.py"
