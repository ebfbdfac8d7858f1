# Stage 1: reference data. One job per ~50 points (chunk) keeps PySCF start-up cost low; each job runs
# single-threaded so that two of them share this 2-core machine (two 1-thread jobs beat one 2-thread job).


rule sample_points:
    """Sampling design of one system: every train/test point, its chunk and its place on the chunk's path."""
    output:
        "results/{system}/data/points.csv",
    log:
        log_path("sample_points", "{system}"),
    benchmark:
        bench_path("sample_points", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("sample_points"),
    script:
        "../scripts/sample_points.py"


rule dft_chunk:
    """PySCF energies and analytic forces of one chunk of points, with the SCF fallback chain."""
    input:
        points="results/{system}/data/points.csv",
    output:
        xyz="results/{system}/data/chunks/{chunk}.extxyz",
        status="results/{system}/data/chunks/{chunk}.json",
    log:
        log_path("dft_chunk", "{system}", "{chunk}"),
    benchmark:
        bench_path("dft_chunk", "{system}", "{chunk}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("dft_chunk"),
    script:
        "../scripts/dft_chunk.py"


rule assemble_dataset:
    """Train/test extxyz datasets and the per-system DFT report (fails above dft.max_failed_fraction)."""
    input:
        xyz=lambda wc: expand("results/{system}/data/chunks/{chunk}.extxyz", system=wc.system, chunk=chunks(wc.system)),
        status=lambda wc: expand("results/{system}/data/chunks/{chunk}.json", system=wc.system, chunk=chunks(wc.system)),
    output:
        train="results/{system}/data/train.extxyz",
        test="results/{system}/data/test.extxyz",
        report=report(
            "results/{system}/data/dft_report.md",
            caption="../report/dft_report.rst",
            category="Reference data",
            subcategory="{system}",
        ),
        report_json="results/{system}/data/dft_report.json",
    log:
        log_path("assemble_dataset", "{system}"),
    benchmark:
        bench_path("assemble_dataset", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("assemble_dataset"),
    script:
        "../scripts/assemble_dataset.py"
