"""Gradients of the wrong dtype from user code: named as such, not as another mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradparity.debug import debug_numpy

ROOT = Path(__file__).resolve().parents[1]
SEED_TEXT = (ROOT / "examples" / "seed_backprop.py").read_text()


def _variant(tmp_path: Path, before_return: str) -> Path:
    p = tmp_path / "mine.py"
    p.write_text(SEED_TEXT.replace("    return grads", f"    {before_return}\n    return grads"))
    return p


@pytest.mark.parametrize("cast", ['grads["dW1"] = grads["dW1"].astype(int)',
                                  'grads["dZ2"] = grads["dZ2"].astype(np.int32)',
                                  'grads = {k: (v * 8).astype(int) for k, v in grads.items()}'])
def test_integer_gradients_are_diagnosed_as_an_integer_cast(tmp_path, cast):
    r = debug_numpy(_variant(tmp_path, cast), backends=())
    assert r.exit_code == 1
    assert r.first is not None and r.first.diagnosis.code == "integer_dtype"
    assert "cast to integers" in r.first.diagnosis.text
    assert "off-by-one" not in r.report()


def test_float32_gradients_in_a_float64_session_do_not_pass(tmp_path):
    r = debug_numpy(_variant(tmp_path, 'grads = {k: v.astype("float32") for k, v in '
                                       'grads.items()}'), backends=())
    assert r.exit_code == 1
    codes = {c.diagnosis.code for c in r.checks if c.is_finding}
    assert codes == {"low_precision"}
    assert "float32 in a float64 session" in r.first.diagnosis.text
    assert "per-example dZ/dA, as in the seed" in r.report()  # the convention still found


def test_float64_gradients_in_a_float32_session_are_fine(tmp_path):
    assert debug_numpy(ROOT / "examples" / "seed_backprop.py", backends=(),
                       dtype="float32").exit_code == 0
