"""compare_arrays: metrics, verdicts and the mismatch message."""

import numpy as np
import pytest

from gradparity.judge.compare import compare_arrays, ulp_distance


def test_identical_arrays_pass_with_zero_metrics():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = compare_arrays(a, a.copy(), rtol=0.0, atol=0.0)
    assert c.passed and c.n_mismatch == 0
    assert c.max_abs_err == 0.0 and c.max_ulp == 0.0 and c.norm_err_eps == 0.0
    assert c.cosine == pytest.approx(1.0)


def test_one_ulp_is_counted_in_the_working_dtype():
    e = np.array([1.0, 2.0], dtype=np.float32)
    a = e.copy()
    a[1] = np.nextafter(a[1], np.float32(3))
    c = compare_arrays(a, e, rtol=0.0, atol=0.0)
    assert c.max_ulp == 1.0
    assert not c.passed and c.worst_index == (1,)


def test_ulp_distance_across_zero_and_signed_zero():
    a = np.array([0.0, -0.0, 1e-45, -1e-45], dtype=np.float32)
    e = np.array([-0.0, 0.0, -1e-45, 1e-45], dtype=np.float32)
    np.testing.assert_array_equal(ulp_distance(a, e), [0, 0, 2, 2])


def test_worst_index_is_the_largest_violation_and_message_names_it():
    e = np.array([[1.0, 2.0], [3.0, 4.0]])
    a = e.copy()
    a[0, 1] = -2.0
    a[1, 1] = 4.5
    c = compare_arrays(a, e, rtol=1e-7, atol=1e-7)
    assert c.n_mismatch == 2 and c.worst_index == (0, 1)
    assert c.worst_value == -2.0 and c.worst_expected == 2.0
    msg = c.message("dW1")
    assert "Mismatched elements: 2 / 4 (50.0%)" in msg
    assert "Greatest absolute difference: 4 at index (0, 1)" in msg
    assert "Greatest relative difference: 2 at index (0, 1)" in msg


def test_tolerance_rule_is_atol_plus_rtol_times_expected():
    e = np.array([100.0])
    inside = compare_arrays(e + 1.0, e, rtol=0.0099, atol=0.02)  # allowed 1.01
    outside = compare_arrays(e + 1.0, e, rtol=0.0099, atol=0.0)  # allowed 0.99
    assert inside.passed and not outside.passed


def test_nonfinite_pairs():
    same = compare_arrays(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]),
                          rtol=0, atol=0)
    assert same.passed
    diff = compare_arrays(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), rtol=1, atol=1)
    assert not diff.passed and diff.worst_index == (0,)
    inf = compare_arrays(np.array([np.inf]), np.array([-np.inf]), rtol=1, atol=1)
    assert not inf.passed and inf.max_ulp == np.inf


def test_shape_mismatch_is_a_failure_with_both_shapes():
    c = compare_arrays(np.zeros((3, 2)), np.zeros((2, 3)), rtol=1, atol=1)
    assert not c.passed
    assert "(3, 2)" in c.message() and "(2, 3)" in c.message()


def test_scalar_and_row_format():
    c = compare_arrays(np.float64(3.0), np.float64(3.0), rtol=0, atol=0)
    row = c.as_row()
    assert row["shape"] == "scalar" and row["passed"] is True
    assert "mismatch_mask" not in row


def test_normwise_error_in_eps_units():
    e = np.ones(4, dtype=np.float64)
    a = e + np.finfo(np.float64).eps
    c = compare_arrays(a, e, rtol=0, atol=1)
    assert c.norm_err_eps == pytest.approx(1.0)


@pytest.mark.parametrize("n", [5, 70_000])  # one piece, and block by block
def test_long_double_arrays_are_measured_in_float64_units(n):
    e = np.linspace(1.0, 2.0, n).astype(np.longdouble)
    a = e.copy()
    a[3] = np.nextafter(np.float64(a[3]), np.inf)  # one float64 ULP away
    c = compare_arrays(a, e, rtol=0.0, atol=0.0)
    assert c.max_ulp == 1.0 and c.n_mismatch == 1 and c.worst_index == (3,)
    assert compare_arrays(e, e, rtol=0.0, atol=0.0, dtype="longdouble").passed
