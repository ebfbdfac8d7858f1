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
        models=lambda wc: set_inputs(figure_sets(wc.system, "model.zip", wc.scope)),
        predictions=lambda wc: set_inputs(figure_sets(wc.system, "test_predictions.extxyz", wc.scope)),
        train="results/{system}/data/train.extxyz",
        test="results/{system}/data/test.extxyz",
        slice=lambda wc: [] if len(SPECS[wc.system].symbols) == 2 else f"results/{wc.system}/data/slice.extxyz",
    output:
        parity_png=report(
            "results/{scope}figures/{system}_parity.png",
            caption="../report/parity.rst",
            category="Figures",
            subcategory="{system}",
        ),
        parity_pdf="results/{scope}figures/{system}_parity.pdf",
        curve_png=report(
            "results/{scope}figures/{system}_curve.png",
            caption="../report/curve.rst",
            category="Figures",
            subcategory="{system}",
        ),
        curve_pdf="results/{scope}figures/{system}_curve.pdf",
    log:
        log_path("figures_system", "{scope}{system}"),
    benchmark:
        bench_path("figures_system", "{scope}{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        models=lambda wc: figure_sets(wc.system, "model.zip", wc.scope),
        predictions=lambda wc: figure_sets(wc.system, "test_predictions.extxyz", wc.scope),
        settings=settings("figures_system"),
    script:
        "../scripts/figures_system.py"


rule figure_md:
    """Interatomic distance against time for a diatomic, DFT and every model (the paper's MD figure)."""
    input:
        trajectories=lambda wc: [f"{md_dir(wc.system, k, p)}/trajectory.extxyz" for k, p in md_figure_runs(wc.system, wc.scope)],
    output:
        png=report(
            "results/{scope}figures/{system}_md_distance.png",
            caption="../report/md_distance.rst",
            category="Figures",
            subcategory="{system}",
        ),
        pdf="results/{scope}figures/{system}_md_distance.pdf",
    log:
        log_path("figure_md", "{scope}{system}"),
    benchmark:
        bench_path("figure_md", "{scope}{system}")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        kinds=lambda wc: [k for k, _ in md_figure_runs(wc.system, wc.scope)],
    script:
        "../scripts/figure_md.py"


rule figures_summary:
    """Learning curves of every model, effective-dimension bars and d_n/d against n."""
    input:
        curves=lambda wc: set_inputs([st for s in SYSTEMS for st in figure_sets(s, "learning_curve.csv", wc.scope)]),
        effdims=lambda wc: kind_files("effective_dimension.json", scope=wc.scope),
    output:
        learning_png=report(
            "results/{scope}figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
            subcategory="all",
        ),
        learning_pdf="results/{scope}figures/learning_curves.pdf",
        effdim_png=report(
            "results/{scope}figures/effective_dimension.png",
            caption="../report/effective_dimension.rst",
            category="Figures",
            subcategory="all",
        ),
        effdim_pdf="results/{scope}figures/effective_dimension.pdf",
        effdim_n_png=report(
            "results/{scope}figures/effective_dimension_vs_n.png",
            caption="../report/effective_dimension_vs_n.rst",
            category="Figures",
            subcategory="all",
        ),
        effdim_n_pdf="results/{scope}figures/effective_dimension_vs_n.pdf",
    log:
        log_path("figures_summary", "{scope}all"),
    benchmark:
        bench_path("figures_summary", "{scope}all")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        curves=lambda wc: {s: figure_sets(s, "learning_curve.csv", wc.scope) for s in SYSTEMS},
        effdims=lambda wc: {
            s: {
                k: f"results/{s}/models/{k}/effective_dimension.json"
                for k in kinds_with("effective_dimension.json", s, wc.scope)
            }
            for s in SYSTEMS
        },
    script:
        "../scripts/figures_summary.py"


rule metrics:
    """metrics.json (every error and MD number, with provenance) and MANIFEST.sha256 of every committed artifact."""
    input:
        errors=lambda wc: [f"results/{wc.scope}tables/{s}_errors.csv" for s in SYSTEMS],
        md="results/{scope}tables/md.csv",
        reproduction=lambda wc: [f"results/{wc.scope}tables/reproduction.csv"] if REPRODUCTION else [],
        artifacts=lambda wc: committed_artifacts(wc.scope),
    output:
        metrics=report("results/{scope}metrics.json", caption="../report/metrics.rst", category="Tables"),
        manifest="results/{scope}MANIFEST.sha256",
    log:
        log_path("metrics", "{scope}all"),
    benchmark:
        bench_path("metrics", "{scope}all")
    conda:
        "../../envs/qnnff.yaml"
    threads: 1
    params:
        settings=settings("metrics"),
    script:
        "../scripts/metrics.py"
