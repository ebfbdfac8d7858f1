from qnnff.stages import setup_logging
from qnnff.stages.studies import StudyPointJob, study_point

setup_logging(snakemake.log[0])
w = snakemake.wildcards
study_point(StudyPointJob.of(snakemake.params.settings, study=w.study, point=w.point, seed_index=int(w.seed)),
            train_xyz=snakemake.input.train, test_xyz=snakemake.input.test, out_json=snakemake.output[0],
            pipeline_model=snakemake.input.get("model"), pipeline_predictions=snakemake.input.get("predictions"),
            pipeline_summary=snakemake.input.get("summary"))
