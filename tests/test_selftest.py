"""The self-test: every applicable fault detected, nothing unmodified flagged; and the
self-test itself can fail (a harness that explains too much would miss faults)."""

import pytest

import gradparity.selftest.run as selftest
from gradparity.core.spec import Spec
from gradparity.experiments.suites import kinks_block, quick_suite, saturated_block
from gradparity.selftest.faults import FAULTS

SPECS = quick_suite()[::3] + kinks_block()[::12] + saturated_block()[::5] + [
    Spec((5, 4, 4, 4, 3), activation="sigmoid", head="softmax_ce", loss_form="probs",
         dtype="float32", batch=4, seed=3),
]


@pytest.fixture(scope="module")
def report():
    return selftest.run_selftest(SPECS, backends=[])


def test_every_applicable_fault_is_detected_and_localised(report):
    rates = report.faults.set_index("fault")
    assert set(rates.index) == set(FAULTS)
    assert (rates["applicable"] > 0).all()
    assert (rates["detection_rate"] == 1.0).all(), rates[rates["detection_rate"] < 1]
    assert (rates["missed"] == 0).all()
    assert rates.loc["derivative_at_A", "no_effect"] > 0  # relu'(A) == relu'(Z): honest


def test_unmodified_reference_copy_raises_no_alarm(report):
    alarms = report.false_alarms.set_index("backend")
    assert alarms.loc["reference copy", "false_alarms"] == 0
    assert report.ok


def test_selftest_fails_when_the_harness_explains_away_a_fault(monkeypatch):
    # A harness whose saturation explanation swallowed everything would miss faults:
    # the self-test must then report a detection rate below 100% and not be ok.
    real = selftest.judge

    def lenient(case, actual, reference, **kw):
        rows = real(case, actual, reference, **kw)
        return [r.__class__(**{**r.__dict__, "status": "saturation"}) if r.status == "fail"
                else r for r in rows]

    monkeypatch.setattr(selftest, "judge", lenient)
    bad = selftest.run_selftest(SPECS[:3], backends=[])
    assert not bad.ok
    assert (bad.faults["detection_rate"].dropna() < 1.0).any()


def test_markdown_names_every_fault(report):
    text = selftest.selftest_markdown(report, suite="mixed", policy="calibrated")
    for name in FAULTS:
        assert name in text
    assert ": PASS" in text


def test_allclose_policy_misses_a_small_perturbation_that_calibrated_catches():
    deep = [SPECS[-1]]  # deep sigmoid net: every |dW1| < 5e-3, so 1e-3 of it < atol
    loose = selftest.run_selftest(deep, backends=[], policy="allclose")
    row = loose.faults.set_index("fault").loc["perturbed_element"]
    assert row["missed"] == 1 and not loose.ok
    strict = selftest.run_selftest(deep, backends=[], policy="calibrated")
    assert strict.faults.set_index("fault").loc["perturbed_element", "detected"] == 1
