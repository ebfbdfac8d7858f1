# Stage 2: features. The scalers are fitted on the training set only and reused for test points and MD.


rule featurize:
    """Internal coordinates -> [-1, 1] -> arcsin map, with Jacobians; energy scaler fitted on the training set."""
    input:
        train="results/{system}/data/train.extxyz",
        test="results/{system}/data/test.extxyz",
    output:
        scalers="results/{system}/features/scalers.json",
        train="results/{system}/features/train.npz",
        test="results/{system}/features/test.npz",
    log:
        log_path("featurize", "{system}"),
    benchmark:
        bench_path("featurize", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("featurize"),
    script:
        "../scripts/featurize.py"
