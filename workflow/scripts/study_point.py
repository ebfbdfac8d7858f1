from qnnff.stages import setup_logging
from qnnff.stages.studies import study_point

setup_logging(snakemake.log[0])
study_point(snakemake.params.settings, snakemake.wildcards.study, snakemake.wildcards.point, int(snakemake.wildcards.seed),
            train_xyz=snakemake.input.train, test_xyz=snakemake.input.test, out_json=snakemake.output[0],
            pipeline_model=snakemake.input.get("model"), pipeline_predictions=snakemake.input.get("predictions"),
            pipeline_summary=snakemake.input.get("summary"))
