"""`case_identity`: a Case is its spec's own exactly when its bits are the spec's, however
often it is judged and whatever happens to its arrays in between."""

import dataclasses
import gc
import threading

import numpy as np
import pytest

import gradparity.reference.case as case_module
from gradparity.core.spec import Spec
from gradparity.reference.case import case_identity, make_case

SPEC = Spec((4, 5, 3), seed=3)


@pytest.fixture
def draws(monkeypatch):
    """How many times the spec's arrays are drawn."""
    calls = []
    real = case_module.make_case

    def counting(spec):
        calls.append(spec)
        return real(spec)

    monkeypatch.setattr(case_module, "make_case", counting)
    return calls


def test_a_case_judged_again_is_not_drawn_again(draws):
    case = make_case(SPEC)
    for _ in range(3):
        assert case_identity(case) == (case, SPEC.case_id, True)
    assert len(draws) == 1


def test_a_case_changed_in_place_between_two_checks_gets_its_own_id():
    case = make_case(SPEC)
    assert case_identity(case)[1:] == (SPEC.case_id, True)
    case.parameters["W1"][0, 0] = np.nextafter(case.parameters["W1"][0, 0], np.inf)
    _, case_id, rerun = case_identity(case)
    assert case_id.startswith(SPEC.case_id + "-arrays") and rerun is False
    case.parameters["W1"][0, 0] = make_case(SPEC).parameters["W1"][0, 0]  # back again
    assert case_identity(case)[1:] == (SPEC.case_id, True)


def test_the_comparison_is_of_bits():
    """-0.0 is not 0.0, and NaNs are told apart by their payloads: the bits that a backend
    is given are the case."""
    spec = Spec((2, 3, 1), seed=0, head="linear_mse", batch=2,
                inputs=((0.0, 1.0), (2.0, 3.0)))
    case = make_case(spec)
    case.X[0, 0] = -0.0
    assert case_identity(case)[2] is False
    assert case_identity(make_case(spec))[2] is True
    a, b = make_case(spec), make_case(spec)
    quiet = np.uint64(0x7FF8000000000000)
    a.X[1, 1] = quiet.view(np.float64)
    b.X[1, 1] = (quiet + np.uint64(1)).view(np.float64)
    assert not case_module._same_arrays(a, b)
    b.X[1, 1] = quiet.view(np.float64)
    assert case_module._same_arrays(a, b)


def test_what_is_kept_goes_with_its_case_and_stays_bounded(draws):
    cases = [make_case(dataclasses.replace(SPEC, seed=s)) for s in range(5)]
    for c in cases:
        case_identity(c)
    assert len(case_module._CHECKED) == case_module._KEEP
    case_identity(cases[0])  # pushed out: drawn again
    assert len(draws) == 6
    del cases, c
    gc.collect()
    last = make_case(SPEC)
    case_identity(last)  # the next check drops the entries of Cases that are gone
    assert [ref() for ref, _ in case_module._CHECKED] == [last]


def test_a_case_freed_by_a_collection_while_a_check_holds_the_lock_does_not_hang():
    """A Case that only a reference cycle holds is freed by whichever garbage collection
    comes next, possibly one that starts while a check holds its lock in the same thread:
    nothing that runs then may wait for that lock."""
    gc.disable()  # no collection before the one under the lock
    try:
        old = make_case(dataclasses.replace(SPEC, seed=1))
        case_identity(old)
        cycle = [old]
        cycle.append(cycle)
        del old, cycle
        done = threading.Event()

        def collect_holding_the_lock():
            with case_module._CHECKED_LOCK:
                gc.collect()
            done.set()

        threading.Thread(target=collect_holding_the_lock, daemon=True).start()
        assert done.wait(30), "the collection waited for the lock its own thread held"
    finally:
        gc.enable()
    assert case_identity(make_case(SPEC))[2] is True


def test_another_case_of_the_same_spec_is_drawn_for_itself(draws):
    a, b = make_case(SPEC), make_case(SPEC)
    b.X[0, 0] += 1.0
    assert case_identity(a)[2] is True and case_identity(b)[2] is False
    assert case_identity(a)[2] is True and case_identity(b)[2] is False
    assert len(draws) == 2
