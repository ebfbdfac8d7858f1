# Stage 3: models. One rule per model kind (train_qnn, train_nn, train_bpnn), each per system; they share
# one script. A killed training resumes from its checkpoint (params.checkpoint, not an output, so Snakemake
# keeps it); the model file itself is written atomically at the end.


def model_outputs(kind):
    return dict(
        model="results/{system}/models/" + kind + "/model.zip",
        predictions="results/{system}/models/" + kind + "/test_predictions.extxyz",
        curve="results/{system}/models/" + kind + "/learning_curve.csv",
        summary="results/{system}/models/" + kind + "/train_summary.json",
    )


rule train_qnn:
    """Train the QNN (a Qiskit circuit run by qnnff's exact torch statevector engine) on energies and forces."""
    input:
        scalers="results/{system}/features/scalers.json",
        train="results/{system}/features/train.npz",
        test="results/{system}/features/test.npz",
    output:
        **model_outputs("qnn"),
    params:
        kind="qnn",
        config_hash=model_hash("qnn"),
        checkpoint="results/{system}/models/qnn/checkpoint.pt",
    log:
        log_path("train_qnn", "{system}"),
    benchmark:
        bench_path("train_qnn", "{system}")
    threads: 1
    resources:
        mem_mb=900,  # measured peak RSS x 1.5 (benchmarks/resources_from_benchmarks.py)
        runtime=5,  # minutes; measured wall time x 3, at least 5
    conda:
        "../../envs/qnnff.yaml"
    script:
        "../scripts/train.py"


use rule train_qnn as train_nn with:
    output:
        **model_outputs("nn"),
    params:
        kind="nn",
        config_hash=model_hash("nn"),
        checkpoint="results/{system}/models/nn/checkpoint.pt",
    log:
        log_path("train_nn", "{system}"),
    benchmark:
        bench_path("train_nn", "{system}")
    resources:
        mem_mb=700,  # measured peak RSS x 1.5 (benchmarks/resources_from_benchmarks.py)
        runtime=5,  # minutes; measured wall time x 3, at least 5


use rule train_qnn as train_bpnn with:
    output:
        **model_outputs("bpnn"),
    params:
        kind="bpnn",
        config_hash=model_hash("bpnn"),
        checkpoint="results/{system}/models/bpnn/checkpoint.pt",
    log:
        log_path("train_bpnn", "{system}"),
    benchmark:
        bench_path("train_bpnn", "{system}")
    resources:
        mem_mb=800,  # measured peak RSS x 1.5 (benchmarks/resources_from_benchmarks.py)
        runtime=5,  # minutes; measured wall time x 3, at least 5
