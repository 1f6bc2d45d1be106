"""Runs on Dask: ``--dask``/``--workers`` give the serial run's table byte for byte, in the same
order; a worker that dies loses no case; the fuzz search runs in shards on the cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")
pytest.importorskip("hypothesis")

from gradparity.cli import main  # noqa: E402
from gradparity.core.spec import Spec  # noqa: E402
from gradparity.experiments.runner import run_specs  # noqa: E402
from gradparity.reference.mlp import reference_gradients  # noqa: E402

SUITE = """\
name = "tiny"
[[sweep]]
sizes = [[3, 4, 2]]
activation = ["relu"]
head = ["sigmoid_bce"]
dtype = ["float32", "float64"]
batch = 4
[[case]]
sizes = [3, 4, 4, 2]
activation = "leaky_relu"
head = "linear_l1"
regime = "kinks"
batch = 6
"""


class DiesOnce:
    """The reference as a backend whose worker process dies the first time it meets
    ``victim`` (a marker file says it already died)."""

    name = "reference"

    def __init__(self, marker: str, victim: str) -> None:
        self.marker, self.victim = marker, victim

    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str:
        return ""

    def gradients(self, case):
        if case.spec.case_id == self.victim and not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)  # the worker process dies mid-task
        return reference_gradients(case, backend=self.name)

    def kink_conventions(self, dtype: str) -> dict[str, float]:
        from gradparity.reference.mlp import REFERENCE_KINKS

        return dict(REFERENCE_KINKS)

    def version(self) -> str | None:
        return None


@pytest.fixture(scope="module")
def client():
    import cloudpickle

    from gradparity.experiments.distributed import open_client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with open_client(workers=2) as c:
        yield c


def test_run_on_the_cluster_is_byte_identical_to_serial(client, tmp_path):
    """``gradparity run --dask ADDRESS`` (here the address of a `LocalCluster` of two
    workers, as ``--workers 2`` starts it) writes the serial run's table.csv."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    common = [str(suite), "--backends", "reference,torch", "-q"]
    assert main(["run", *common, "--out", str(tmp_path / "serial")]) == 0
    address = client.scheduler.address
    assert main(["run", *common, "--dask", address, "--out", str(tmp_path / "dask")]) == 0
    serial = (tmp_path / "serial" / "table.csv").read_bytes()
    assert serial.count(b"\n") > 50
    assert (tmp_path / "dask" / "table.csv").read_bytes() == serial


def test_a_worker_that_dies_loses_no_case(client, tmp_path):
    from gradparity.experiments.distributed import run_specs_distributed

    specs = [Spec((3, 4, 2), activation=a, batch=3, seed=s) for a in ("relu", "gelu")
             for s in range(3)]
    marker = tmp_path / "died"
    backend = DiesOnce(str(marker), specs[2].case_id)
    seen = []
    table = run_specs_distributed(specs, client, backends=[backend],
                                  progress=lambda i, n, spec, st: seen.append((i, n)))
    assert marker.exists(), "a worker died"
    serial = run_specs(specs, backends=["reference"])
    assert table.to_csv(index=False) == serial.to_csv(index=False)
    assert seen == [(i, len(specs)) for i in range(1, len(specs) + 1)]


def test_fuzz_shards_on_the_cluster_find_a_fault(client, tmp_path, capsys):
    """``gradparity fuzz --dask ADDRESS``: one search per worker, merged; the example
    database comes back into the result folder."""
    import pandas as pd

    from gradparity.fuzz.search import FileExampleDatabase

    out = tmp_path / "fz"
    assert main(["fuzz", "--budget", "15", "--backends", "reference+sign_flip", "--dask",
                 client.scheduler.address, "--out", str(out), "-q"]) == 1
    found = pd.read_csv(out / "counterexamples.csv")
    assert found[["backend", "status", "reason_code"]].values.tolist() == [
        ["reference+sign_flip", "fail", "convention"]]
    assert found["case_id"][0].startswith("relu-linear_mse.logits-f32-1x1-m1-")
    assert FileExampleDatabase.load(out / "examples.json").data
    assert "reference+sign_flip: fail (convention) at dZ1" in capsys.readouterr().out


def test_every_worker_limits_its_threads(client):
    assert set(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == {"1"}
