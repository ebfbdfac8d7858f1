# Stage 3: models. One rule per model kind (train_qnn, train_nn, train_bpnn, train_eqnn; train_sgdml, a closed-form fit
# with one seed), one job per (system, protocol, seed), or per (system, protocol) training every seed in turn with
# `seeds_in_one_job: true` (configs whose trainings take less than a job's start-up; config/README.md); they share one
# script. A killed training resumes from its checkpoint
# (params.checkpoint, not an output, so Snakemake keeps it); the model file itself is written atomically at the end.
# `select_seeds` gathers the seeds of one (kind, protocol): per-seed test errors, mean +- sd and the median seed that
# figures, MD and Aer use.
TRAIN_JOB = ("{system}", "{protocol}") if SEEDS_IN_ONE_JOB else ("{system}", "{protocol}", "{seed}")


def job_seeds(kind):
    """params.seed: the seed of a training job, or every seed of the kind (a list) with seeds_in_one_job."""
    return lambda wc: SEEDS_OF[kind] if SEEDS_IN_ONE_JOB else int(wc.seed)


def model_outputs(kind):
    """The files of a training job: one seed's, or lists over every seed with seeds_in_one_job."""
    base = "results/{system}/models/" + kind + "/{protocol}/seed"
    names = dict(
        model="model.zip", predictions="test_predictions.extxyz", curve="learning_curve.csv", summary="train_summary.json"
    )
    if SEEDS_IN_ONE_JOB:
        return {key: [f"{base}{k}/{name}" for k in SEEDS_OF[kind]] for key, name in names.items()}
    return {key: base + "{seed}/" + name for key, name in names.items()}


def checkpoints(kind):
    """params.checkpoint; one job per seed keeps the pattern it always had (its jobs' params are unchanged)."""
    if SEEDS_IN_ONE_JOB:
        return lambda wc: [f"{Variant(wc.system, kind, wc.protocol).model_dir(k)}/checkpoint.pt" for k in SEEDS_OF[kind]]
    return "results/{system}/models/" + kind + "/{protocol}/seed{seed}/checkpoint.pt"


rule train_qnn:
    """Train the QNN (a Qiskit circuit run by qnnff's exact torch statevector engine) under one protocol: one seed, or every seed."""
    input:
        scalers="results/{system}/features/scalers.json",
        train="results/{system}/features/train.npz",
        test="results/{system}/features/test.npz",
    output:
        **model_outputs("qnn"),
    log:
        log_path("train_qnn", *TRAIN_JOB),
    benchmark:
        bench_path("train_qnn", *TRAIN_JOB)
    priority: 10  # the QNN trainings are the longest jobs: start them as soon as their features exist
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        kind="qnn",
        protocol=lambda wc: wc.protocol,
        seed=job_seeds("qnn"),
        settings=settings("train", kind="qnn"),
        checkpoint=checkpoints("qnn"),
    script:
        "../scripts/train.py"


use rule train_qnn as train_nn with:
    output:
        **model_outputs("nn"),
    log:
        log_path("train_nn", *TRAIN_JOB),
    benchmark:
        bench_path("train_nn", *TRAIN_JOB)
    priority: 0
    params:
        kind="nn",
        protocol=lambda wc: wc.protocol,
        seed=job_seeds("nn"),
        settings=settings("train", kind="nn"),
        checkpoint=checkpoints("nn"),


use rule train_qnn as train_bpnn with:
    output:
        **model_outputs("bpnn"),
    log:
        log_path("train_bpnn", *TRAIN_JOB),
    benchmark:
        bench_path("train_bpnn", *TRAIN_JOB)
    priority: 0
    params:
        kind="bpnn",
        protocol=lambda wc: wc.protocol,
        seed=job_seeds("bpnn"),
        settings=settings("train", kind="bpnn"),
        checkpoint=checkpoints("bpnn"),


use rule train_qnn as train_sgdml with:
    output:
        **model_outputs("sgdml"),
    log:
        log_path("train_sgdml", *TRAIN_JOB),
    benchmark:
        bench_path("train_sgdml", *TRAIN_JOB)
    priority: 0
    params:
        kind="sgdml",
        protocol=lambda wc: wc.protocol,
        seed=job_seeds("sgdml"),
        settings=settings("train", kind="sgdml"),
        checkpoint=checkpoints("sgdml"),


use rule train_qnn as train_eqnn with:
    output:
        **model_outputs("eqnn"),
    log:
        log_path("train_eqnn", *TRAIN_JOB),
    benchmark:
        bench_path("train_eqnn", *TRAIN_JOB)
    priority: 0
    params:
        kind="eqnn",
        protocol=lambda wc: wc.protocol,
        seed=job_seeds("eqnn"),
        settings=settings("train", kind="eqnn"),
        checkpoint=checkpoints("eqnn"),


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
