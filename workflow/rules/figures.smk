# Stage 6: figures (PNG + PDF), metrics with provenance and the manifest of committed results.


rule dft_slice:
    """DFT energies and forces along one coordinate (others at the centre of their ranges) for the slice figure."""
    output:
        "results/{system}/data/slice.extxyz",
    log:
        log_path("dft_slice", "{system}"),
    benchmark:
        bench_path("dft_slice", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("dft_slice"),
    script:
        "../scripts/dft_slice.py"


rule figures_system:
    """Parity plots (test set) and the energy/force curve along one coordinate (LiH: the bond; others: a slice)."""
    input:
        models=lambda wc: set_inputs(figure_sets(wc.system, "model.zip")),
        predictions=lambda wc: set_inputs(figure_sets(wc.system, "test_predictions.extxyz")),
        train="results/{system}/data/train.extxyz",
        test="results/{system}/data/test.extxyz",
        slice=lambda wc: [] if len(SPECS[wc.system].symbols) == 2 else f"results/{wc.system}/data/slice.extxyz",
    output:
        parity_png=report(
            "results/figures/{system}_parity.png", caption="../report/parity.rst", category="Figures", subcategory="{system}"
        ),
        parity_pdf="results/figures/{system}_parity.pdf",
        curve_png=report(
            "results/figures/{system}_curve.png", caption="../report/curve.rst", category="Figures", subcategory="{system}"
        ),
        curve_pdf="results/figures/{system}_curve.pdf",
    log:
        log_path("figures_system", "{system}"),
    benchmark:
        bench_path("figures_system", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        models=lambda wc: figure_sets(wc.system, "model.zip"),
        predictions=lambda wc: figure_sets(wc.system, "test_predictions.extxyz"),
        settings=settings("figures_system"),
    script:
        "../scripts/figures_system.py"


rule figure_md:
    """Interatomic distance against time for a diatomic, DFT and every model (the paper's MD figure)."""
    input:
        trajectories=lambda wc: [f"{md_dir(wc.system, k, p)}/trajectory.extxyz" for k, p in md_figure_runs(wc.system)],
    output:
        png=report(
            "results/figures/{system}_md_distance.png",
            caption="../report/md_distance.rst",
            category="Figures",
            subcategory="{system}",
        ),
        pdf="results/figures/{system}_md_distance.pdf",
    log:
        log_path("figure_md", "{system}"),
    benchmark:
        bench_path("figure_md", "{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        kinds=lambda wc: [k for k, _ in md_figure_runs(wc.system)],
    script:
        "../scripts/figure_md.py"


rule figures_summary:
    """Learning curves of every model, effective-dimension bars and d_n/d against n."""
    input:
        curves=set_inputs([st for s in SYSTEMS for st in figure_sets(s, "learning_curve.csv")]),
        effdims=kind_files("effective_dimension.json"),
    output:
        learning_png=report(
            "results/figures/learning_curves.png", caption="../report/learning_curves.rst", category="Figures", subcategory="all"
        ),
        learning_pdf="results/figures/learning_curves.pdf",
        effdim_png=report(
            "results/figures/effective_dimension.png",
            caption="../report/effective_dimension.rst",
            category="Figures",
            subcategory="all",
        ),
        effdim_pdf="results/figures/effective_dimension.pdf",
        effdim_n_png=report(
            "results/figures/effective_dimension_vs_n.png",
            caption="../report/effective_dimension_vs_n.rst",
            category="Figures",
            subcategory="all",
        ),
        effdim_n_pdf="results/figures/effective_dimension_vs_n.pdf",
    log:
        log_path("figures_summary", "all"),
    benchmark:
        bench_path("figures_summary", "all")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        curves={s: figure_sets(s, "learning_curve.csv") for s in SYSTEMS},
        effdims={
            s: {k: f"results/{s}/models/{k}/effective_dimension.json" for k in kinds_with("effective_dimension.json", s)}
            for s in SYSTEMS
        },
    script:
        "../scripts/figures_summary.py"


rule metrics:
    """metrics.json (every error and MD number, with provenance) and MANIFEST.sha256 of every committed artifact."""
    input:
        errors=expand("results/tables/{system}_errors.csv", system=SYSTEMS),
        md="results/tables/md.csv",
        reproduction=["results/tables/reproduction.csv"] if REPRODUCTION else [],
        artifacts=lambda wc: committed_artifacts(),
    output:
        metrics=report("results/metrics.json", caption="../report/metrics.rst", category="Tables"),
        manifest="results/MANIFEST.sha256",
    log:
        log_path("metrics", "all"),
    benchmark:
        bench_path("metrics", "all")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("metrics"),
    script:
        "../scripts/metrics.py"
