"""The typed input of each job: one frozen spec per kind of job, parsed once at the job boundary.

A rule's job receives its settings slice (:func:`qnnff.settings.rule_settings`, ``params.settings``); its script parses
the slice with the ``of`` classmethod of its job's spec, ``TrainJob.of(snakemake.params.settings, system=...,
kind=..., protocol=..., seed_index=...)``, and passes the spec to the stage function. ``of`` does all the parsing:
the typed settings of :mod:`qnnff.settings` over the schema's defaults, the provenance hashes
(:func:`qnnff.config.data_hash`, :func:`qnnff.protocols.model_hash`, :func:`qnnff.config.config_hash`) and the seeds
(:mod:`qnnff.seeding`), through the same functions as a whole config, so a spec parsed from a slice equals the spec
parsed from the whole config (``tests/test_jobs.py``). The stage functions read the specs' attributes, never a
config's keys.

=====================  ===========================================================================================
spec                   rules
=====================  ===========================================================================================
:class:`DataJob`       ``sample_points``, ``dft_chunk``, ``assemble_dataset``, ``featurize``
:class:`TrainJob`      ``train_qnn``, ``train_nn``, ``train_bpnn`` (and each study point's training)
:class:`EffdimJob`     ``effective_dimension``
:class:`FloorJob`      ``information_floor``
:class:`AerJob`        ``aer_evaluation``
:class:`MDJob`         ``run_md``, ``run_md_dft``, ``run_md_shots``
:class:`FiguresJob`    ``dft_slice``, ``figures_system``
:class:`MetricsJob`    ``metrics``
:class:`StudyPointJob` ``study_point``
:class:`StudyJob`      ``study_table``
=====================  ===========================================================================================

``reproduction_table`` takes :class:`qnnff.settings.ReproductionSettings` itself (its one block). Rules that read
only files (``select_seeds``, ``errors_table``, ``md_table``, ``figure_md``, ``figures_summary``) have no spec.

Like :mod:`qnnff.settings`, this module imports the standard library and the torch-free configuration modules only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .config import SystemSpec, config_hash, data_hash, schema_defaults, system_spec
from .seeding import derive_seed
from .settings import AerSettings, EffdimSettings, FloorSettings, MDSettings, ModelSettings, SliceSettings, TrainingSettings, model_settings_of
from .studies import Study, StudyPoint

AER_RUNS = ("shots", "shots+noise")  # the labels of the Aer runs (without and with the configured noise)


class _OfSystem:
    """A job of one system, given by its :class:`~qnnff.config.SystemSpec` ``spec``: ``job.system`` is its name."""

    spec: SystemSpec

    @property
    def system(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class DataJob(_OfSystem):
    """A system's reference data and features: its :class:`~qnnff.config.SystemSpec`, the config seed (the sampling
    design's), the provenance hash of its data (:func:`qnnff.config.data_hash`) and the featurizer's margin
    (``features.margin``)."""

    spec: SystemSpec
    seed: int
    data_hash: str
    feature_margin: float

    @classmethod
    def of(cls, settings: dict, *, system: str) -> DataJob:
        return cls(spec=system_spec(settings, system), seed=int(settings["seed"]), data_hash=data_hash(settings, system),
                   feature_margin=float({**schema_defaults("features"), **settings.get("features", {})}["margin"]))


@dataclass(frozen=True)
class TrainJob(_OfSystem):
    """One seed of one (kind, protocol) of a system: its optimiser settings, its model's architecture (an NN sized to
    the QNN with the QNN's weight count resolved), the seeds of its initial weights (:func:`qnnff.protocols.init_seed`,
    the same for every protocol of the kind) and of its optimiser (:func:`qnnff.protocols.train_seed`), and the
    provenance hash of the model (:func:`qnnff.protocols.model_hash`)."""

    spec: SystemSpec
    kind: str
    protocol: str
    seed_index: int
    training: TrainingSettings | None  # None: a closed-form kind (fitted, no optimiser; qnnff.kinds)
    model: ModelSettings
    init_seed: int
    train_seed: int
    model_hash: str

    @classmethod
    def of(cls, settings: dict, *, system: str, kind: str, protocol: str, seed_index: int) -> TrainJob:
        from .protocols import closed_form, init_seed, model_hash, train_seed

        k = int(seed_index)
        return cls(spec=system_spec(settings, system), kind=kind, protocol=protocol, seed_index=k,
                   training=None if closed_form(kind) else TrainingSettings.of(settings, system, kind, protocol),
                   model=model_settings_of(settings, system, kind, protocol), init_seed=init_seed(settings, system, kind, k),
                   train_seed=train_seed(settings, system, kind, protocol, k),
                   model_hash=model_hash(settings, system, kind, protocol))

    @classmethod
    def each(cls, settings: dict, *, system: str, kind: str, protocol: str, seeds: int | Sequence[int]) -> list[TrainJob]:
        """The jobs of one training job's seeds: its seed (an int: one job per seed) or every seed (a list:
        ``seeds_in_one_job``), each exactly as :meth:`of` builds it."""
        ks = [int(seeds)] if isinstance(seeds, (int, str)) else [int(k) for k in seeds]
        return [cls.of(settings, system=system, kind=kind, protocol=protocol, seed_index=k) for k in ks]


@dataclass(frozen=True)
class EffdimJob:
    """The effective dimension of one model kind of a system: the Monte-Carlo settings and the seed of each draw
    (its parameters and inputs)."""

    system: str
    kind: str
    effdim: EffdimSettings
    draw_seeds: tuple[int, ...]

    @classmethod
    def of(cls, settings: dict, *, system: str, kind: str) -> EffdimJob:
        ec = EffdimSettings.of(settings)
        seed = int(settings["seed"])
        return cls(system=system, kind=kind, effdim=ec,
                   draw_seeds=tuple(derive_seed(seed, "effdim", system, kind, k) for k in range(ec.n_draws)))


@dataclass(frozen=True)
class FloorJob:
    """The information floor of one model kind's inputs: the GP settings and its seed. The seed is the system's, not
    the kind's, so two kinds that see the same inputs (the QNN and the NN) get the same floor."""

    system: str
    kind: str
    floor: FloorSettings
    seed: int

    @classmethod
    def of(cls, settings: dict, *, system: str, kind: str) -> FloorJob:
        return cls(system=system, kind=kind, floor=FloorSettings.of(settings),
                   seed=derive_seed(int(settings["seed"]), "information_floor", system))


@dataclass(frozen=True)
class AerJob:
    """The circuit evaluation of one protocol's median-seed QNN: the ``aer`` and ``hardware`` settings and the seeds of
    its energies and forces per run (``shots``, ``shots+noise``) and of its Qiskit Runtime evaluation."""

    system: str
    protocol: str
    aer: AerSettings
    energy_seeds: dict[str, int]
    force_seeds: dict[str, int]
    runtime_seed: int

    @classmethod
    def of(cls, settings: dict, *, system: str, protocol: str) -> AerJob:
        seed = int(settings["seed"])
        return cls(system=system, protocol=protocol, aer=AerSettings.of(settings, system),
                   energy_seeds={r: derive_seed(seed, "aer", system, protocol, r) for r in AER_RUNS},
                   force_seeds={r: derive_seed(seed, "aer-forces", system, protocol, r) for r in AER_RUNS},
                   runtime_seed=derive_seed(seed, "runtime", system, protocol))


@dataclass(frozen=True)
class MDJob(_OfSystem):
    """The MD runs of a system: its ``md`` settings, the seed of the Maxwell-Boltzmann velocities of a polyatomic start
    and, per configured shot count, the seed of the shot-noise MD."""

    spec: SystemSpec
    md: MDSettings
    velocity_seed: int
    shot_seeds: dict[int, int]

    @classmethod
    def of(cls, settings: dict, *, system: str) -> MDJob:
        mc = MDSettings.of(settings, system)
        seed = int(settings["seed"])
        return cls(spec=system_spec(settings, system), md=mc, velocity_seed=derive_seed(seed, "md", system),
                   shot_seeds={n: derive_seed(seed, "md-shots", system, n) for n in mc.shots})


@dataclass(frozen=True)
class FiguresJob(_OfSystem):
    """A system's figures and its DFT slice: the system and the slice of its curve figure (the curve of a polyatomic;
    a diatomic's curve is the bond itself, its slice unused)."""

    spec: SystemSpec
    slice: SliceSettings

    @classmethod
    def of(cls, settings: dict, *, system: str) -> FiguresJob:
        spec = system_spec(settings, system)
        return cls(spec=spec, slice=SliceSettings.of(settings, system, spec))


@dataclass(frozen=True)
class MetricsJob:
    """``metrics.json``: the provenance hash of the run (the whole configuration but ``studies``, which never change
    the pipeline's results)."""

    run_hash: str

    @classmethod
    def of(cls, settings: dict) -> MetricsJob:
        return cls(run_hash=config_hash({k: v for k, v in settings.items() if k != "studies"}))


@dataclass(frozen=True)
class StudyPointJob:
    """One seed of one grid point of a study, parsed from the configuration with the point's settings applied
    (:func:`qnnff.studies.apply_point`): its features (``data``, rebuilt in the job) and training (``train``), the seed
    of its training subset, whether it trains exactly the pipeline's model (then reused), its provenance hash
    (:func:`qnnff.studies.point_hash`), the seeds of its shot evaluations, per (shots, noise), and, with
    ``evaluate.floor``, the settings and seed of its inputs' information floor (the system's seed, as in the pipeline)."""

    study: Study
    point: StudyPoint
    seed_index: int
    data: DataJob
    train: TrainJob
    subset_seed: int
    reuses_pipeline_model: bool
    point_hash: str
    shot_seeds: dict[tuple[int, str], int]
    floor: FloorSettings | None = None  # evaluate.floor: the information floor of the point's inputs, with ``floor_seed``
    floor_seed: int = 0

    @classmethod
    def of(cls, settings: dict, *, study: str, point: str, seed_index: int) -> StudyPointJob:
        from . import studies

        st = studies.parse_study(settings, study)
        pt = st.point(point)
        k = int(seed_index)
        derived = studies.apply_point(settings, st, pt.settings)
        seed = int(settings["seed"])
        return cls(study=st, point=pt, seed_index=k, data=DataJob.of(derived, system=st.system),
                   train=TrainJob.of(derived, system=st.system, kind=st.kind, protocol=st.protocol, seed_index=k),
                   subset_seed=derive_seed(seed, "study-subset", st.system, pt.n_train or 0, k),
                   reuses_pipeline_model=studies.reuses_pipeline_model(settings, st, pt),
                   point_hash=studies.point_hash(settings, st, pt),
                   shot_seeds={(int(n), noise): derive_seed(seed, "study-shots", st.name, pt.name, k, int(n), noise)
                               for noise in st.evaluate["noise"] for n in st.evaluate["shots"]},
                   floor=FloorSettings.of(settings) if st.evaluate["floor"] else None,
                   floor_seed=derive_seed(seed, "information_floor", st.system))


@dataclass(frozen=True)
class StudyJob:
    """A study's table and figure: the parsed study, its description and what each grid key is in the base protocol
    (:func:`qnnff.studies.base_values`: the tables print it where a point leaves the key at its base)."""

    study: Study
    description: str
    base_values: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, settings: dict, *, study: str) -> StudyJob:
        from .studies import base_values, parse_study

        st = parse_study(settings, study)
        return cls(study=st, description=(settings["studies"][study].get("description") or "").strip(),
                   base_values=base_values(settings, st))
