"""IBM Qiskit Runtime by config: local testing mode on a fake backend, the QPU-time cap, credentials at start-up."""

import copy
import socket

import numpy as np
import pytest
from test_qnn_shift import lih_model, lih_positions

from qnnff.checks import check_config
from qnnff.config import ConfigError
from qnnff.qnn import runtime as rt


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture()
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv(rt.ENV_TOKEN, raising=False)
    import qiskit_ibm_runtime.accounts.management as mgmt

    monkeypatch.setattr(mgmt, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "qiskit-ibm.json"))
    return tmp_path / "qiskit-ibm.json"


def test_backend_kinds():
    assert rt.backend_kind("aer") == "aer"
    assert rt.backend_kind("FakeManilaV2") == "fake"
    assert rt.backend_kind("ibm_brisbane") == "ibm"
    with pytest.raises(ValueError, match="FakeNowhereV2"):
        rt.backend_kind("FakeNowhereV2")


def test_local_mode_fake_backend_energies_forces_and_layout():
    m, pos = lih_model(), lih_positions(2)
    ev = rt.RuntimeEvaluator(backend="FakeManilaV2", shots=4000, seed=3, max_qpu_seconds=None, dynamical_decoupling=True)
    r = m.circuit_energy_and_forces(pos, evaluate=ev)
    assert r["energy"].shape == (2,) and r["forces"].shape == (2, 2, 3)
    assert np.all(np.isfinite(r["energy"])) and np.all(np.isfinite(r["forces"]))
    assert np.all(r["energy_stderr"] > 0) and np.all(r["forces_stderr"] > 0)
    # noisy device, but the measured energies stay near the exact ones (a few tens of meV for this model)
    assert np.max(np.abs(r["energy"] - r["exact_energy"])) < 0.2
    info = r["info"]
    assert info["mode"] == "local testing" and info["n_primitive_calls"] == 1 and len(info["job_ids"]) == 1
    assert info["n_circuits"] == 2 * 73
    layout = info["layout"]
    assert len(layout) == 2 and len(set(layout)) == 2 and all(0 <= q < 5 for q in layout)  # FakeManilaV2 has 5 qubits
    assert set(info["isa_ops"]) <= {"rz", "sx", "x", "cx", "ecr", "measure", "barrier"}
    assert info["options"]["dynamical_decoupling"] == {"enable": True}
    cost = info["cost"]
    assert cost["n_circuits"] == 146 and cost["shots"] == 4000 and cost["source"].startswith("rep_delay: backend")
    assert cost["qpu_seconds"] == pytest.approx(146 * 4000 * cost["per_shot_s"] + cost["job_overhead_s"])
    again = m.circuit_energy_and_forces(pos, evaluate=rt.RuntimeEvaluator(backend="FakeManilaV2", shots=4000, seed=3, max_qpu_seconds=None))
    assert np.array_equal(again["forces"], r["forces"])  # seeded


def test_qpu_cap_refuses_before_submission(monkeypatch, capsys):
    import qiskit_ibm_runtime

    submitted = []
    monkeypatch.setattr(qiskit_ibm_runtime.EstimatorV2, "run", lambda self, *a, **k: submitted.append(1))
    m, pos = lih_model(), lih_positions(3)
    ev = rt.RuntimeEvaluator(backend="FakeManilaV2", shots=4096, seed=1, max_qpu_seconds=10.0)
    with pytest.raises(rt.QPUBudgetError, match="max_qpu_seconds.*nothing was submitted"):
        m.circuit_energy_and_forces(pos, evaluate=ev)
    assert submitted == []
    assert "Runtime cost estimate on FakeManilaV2: 219 circuits x 4096 shots" in capsys.readouterr().out


def test_precision_sets_shots_and_options():
    assert rt.shots_for({"precision": 0.01}) == 10000
    o = rt.estimator_options({"precision": 0.01, "resilience_level": 1, "measure_mitigation": True, "zne_mitigation": False,
                              "twirling": True}, seed=4, local=False)
    assert o == {"default_precision": 0.01, "resilience_level": 1, "resilience": {"measure_mitigation": True, "zne_mitigation": False},
                 "twirling": {"enable_gates": True, "enable_measure": True}}
    assert rt.estimator_options({"shots": 100}, seed=4, local=True)["simulator"] == {"seed_simulator": 4}
    assert rt.mitigation_factor({"zne_mitigation": True}) == 3 and rt.mitigation_factor({"resilience_level": 2}) == 3
    assert rt.mitigation_factor({"resilience_level": 2, "zne_mitigation": False}) == 1 and rt.mitigation_factor({}) == 1


def test_zne_triples_the_estimate(monkeypatch, capsys):
    import qiskit_ibm_runtime

    monkeypatch.setattr(qiskit_ibm_runtime.EstimatorV2, "run", lambda self, *a, **k: pytest.fail("submitted"))
    m, pos = lih_model(), lih_positions(1)
    ev = rt.RuntimeEvaluator(backend="FakeManilaV2", shots=1000, seed=1, max_qpu_seconds=1.0, zne_mitigation=True, job_overhead_s=0.0)
    with pytest.raises(rt.QPUBudgetError):
        m.circuit_energy_and_forces(pos, evaluate=ev)
    assert "73 circuits x 1000 shots x 3 (ZNE) = 219000 shots" in capsys.readouterr().out
    b, sc = rt.resolve_backend("FakeManilaV2"), m.shift_circuit()
    plain = rt.estimate_cost(b, sc.circuit, n_circuits=73, shots=1000, job_overhead_s=0.0)
    zne = rt.estimate_cost(b, sc.circuit, n_circuits=73, shots=1000, job_overhead_s=0.0, repetitions=3)
    assert zne["qpu_seconds"] == pytest.approx(3 * plain["qpu_seconds"]) and zne["total_shots"] == 3 * 73 * 1000


def _with_hardware(cfg, **hw):
    cfg = copy.deepcopy(cfg)
    cfg["systems"]["LiH"]["models"]["qnn"]["hardware"] = hw
    return cfg


def test_real_backend_without_credentials_fails_at_config_check(paper_config, no_credentials, no_network):
    cfg = _with_hardware(paper_config, backend="ibm_brisbane")
    with pytest.raises(ConfigError, match=r"systems\.LiH\.models\.qnn\.hardware\.backend: 'ibm_brisbane' is a real IBM backend.*"
                                          r"no IBM Quantum credentials"):
        check_config(cfg)
    assert not no_credentials.exists()  # the check creates no account file
    with pytest.raises(rt.CredentialsError):
        rt.RuntimeEvaluator(backend="ibm_brisbane")
    check_config(_with_hardware(paper_config, backend="FakeManilaV2"))  # fake backends need no account
    with pytest.raises(ConfigError, match="FakeNowhereV2"):
        check_config(_with_hardware(paper_config, backend="FakeNowhereV2"))


def test_real_backend_credentials_from_environment_or_saved_account(paper_config, no_credentials, no_network, monkeypatch):
    monkeypatch.setenv(rt.ENV_TOKEN, "not-a-real-token")
    check_config(_with_hardware(paper_config, backend="ibm_brisbane"))
    assert rt.check_credentials("ibm_brisbane") == "environment"
    monkeypatch.delenv(rt.ENV_TOKEN)
    no_credentials.write_text('{"default-ibm-quantum-platform": {"channel": "ibm_quantum_platform", "token": "x", '
                              '"url": "https://cloud.ibm.com", "instance": "crn:x"}}')
    assert rt.check_credentials("ibm_brisbane") == "saved account"


@pytest.mark.parametrize(("backend", "suggestion"), [("Aer", "'aer'"), ("fakemanilav2", "'FakeManilaV2'"),
                                                     ("FakeManila", "'FakeManilaV2'"), ("ibm-brisbane", "'ibm_brisbane'"),
                                                     ("brisbane", "'ibm_brisbane'")])
def test_a_mistyped_backend_is_not_taken_for_a_real_one(paper_config, no_credentials, no_network, backend, suggestion):
    """Issue 26, item 18: 'Aer' and 'fakemanilav2' were reported as real IBM backends without credentials."""
    with pytest.raises(ConfigError) as exc:
        check_config(_with_hardware(paper_config, backend=backend))
    msg = str(exc.value)
    assert f"systems.LiH.models.qnn.hardware.backend: {backend!r}" in msg and "did you mean" in msg and suggestion in msg
    assert "credentials" not in msg
    with pytest.raises(ValueError, match="did you mean"):
        rt.backend_kind(backend)
    assert rt.backend_kind("ibm_torino") == "ibm" and rt.backend_kind("FakeLagosV2") == "fake" and rt.backend_kind("aer") == "aer"
