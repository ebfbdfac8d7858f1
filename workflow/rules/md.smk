# Stage 5: molecular dynamics with ASE (velocity Verlet, NVE), driven by the median-seed model of every
# (kind, protocol) and, where configured, by DFT.


rule run_md:
    """One NVE trajectory of {system} driven by the median seed of {kind} trained under {protocol}."""
    input:
        models=lambda wc: set_inputs([seed_set(wc.system, wc.kind, wc.protocol, "model.zip")]),
    output:
        trajectory="results/{system}/md/{kind}/{protocol}/trajectory.extxyz",
        summary="results/{system}/md/{kind}/{protocol}/summary.json",
    log:
        log_path("run_md", "{system}", "{kind}", "{protocol}"),
    benchmark:
        bench_path("run_md", "{system}", "{kind}", "{protocol}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        models=lambda wc: seed_set(wc.system, wc.kind, wc.protocol, "model.zip"),
        # without the shot-noise MD keys (rule run_md_shots), so adding those never reruns these trajectories
        settings=settings("run_md"),
    script:
        "../scripts/md.py"


rule run_md_dft:
    """The DFT (PySCF) reference trajectory of {system}."""
    output:
        trajectory="results/{system}/md/dft/trajectory.extxyz",
        summary="results/{system}/md/dft/summary.json",
    log:
        log_path("run_md_dft", "{system}"),
    benchmark:
        bench_path("run_md_dft", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        models=None,
        settings=settings("run_md_dft"),
    script:
        "../scripts/md.py"


rule md_table:
    """Energy drift, speed and completion of every MD run."""
    input:
        lambda wc: md_files("summary.json", scope=wc.scope),
    output:
        csv=report("results/{scope}tables/md.csv", caption="../report/md_table.rst", category="Tables"),
        md=report("results/{scope}tables/md.md", caption="../report/md_table.rst", category="Tables"),
    log:
        log_path("md_table", "{scope}all"),
    benchmark:
        bench_path("md_table", "{scope}all")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    script:
        "../scripts/md_table.py"


rule run_md_shots:
    """LiH MD driven by QNN forces measured with {shots} shots per circuit (parameter shift on qiskit-aer), beside the
    exact run of the same median-seed model."""
    input:
        models=lambda wc: set_inputs([seed_set(wc.system, "qnn", wc.protocol, "model.zip")]),
        exact="results/{system}/md/qnn/{protocol}/trajectory.extxyz",
    output:
        trajectory="results/{system}/md/qnn-shots{shots}/{protocol}/trajectory.extxyz",
        summary="results/{system}/md/qnn-shots{shots}/{protocol}/summary.json",
    log:
        log_path("run_md_shots", "{system}", "{shots}", "{protocol}"),
    benchmark:
        bench_path("run_md_shots", "{system}", "{shots}", "{protocol}")
    wildcard_constraints:
        shots=r"\d+",
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        models=lambda wc: seed_set(wc.system, "qnn", wc.protocol, "model.zip"),
        settings=settings("run_md_shots"),
    script:
        "../scripts/md_shots.py"
