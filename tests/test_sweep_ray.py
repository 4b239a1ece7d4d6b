"""`--executor ray`: the same sweep on a local Ray instance gives the same rows as the local pool.
Ray is an optional extra (pip install 'simcore[ray]'); without it these tests are skipped."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'simcore[ray]')")

from simcore.sweep import Store, run_sweep, sweep_from_dict  # noqa: E402

RAW = {
    "name": "ray-small",
    "base": {
        "model": "llama-3.2-1b",
        "hardware": "h100-sxm",
        "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 128, "output_tokens": 8},
        "engine": {"decode_sample_steps": 2},
    },
    "grid": {"workload.batch_size": [1, 4], "parallelism.tp": [1, 2, 3]},
}


def test_a_small_sweep_on_local_ray_matches_the_local_pool(tmp_path):
    on_ray = run_sweep(sweep_from_dict(RAW), tmp_path / "ray.sqlite", executor="ray", workers=2, progress=False)
    assert not ray.is_initialized()  # the Ray it started is shut down again
    assert (on_ray.invalid, on_ray.ran, on_ray.ok, on_ray.failed) == (2, 4, 4, 0)  # tp 3 is invalid, twice
    local = run_sweep(sweep_from_dict(RAW), tmp_path / "local.sqlite", workers=1, progress=False)
    with Store(tmp_path / "ray.sqlite") as a, Store(tmp_path / "local.sqlite") as b:
        ra, rb = a.rows(), b.rows()
    assert [(r.key, r.point, r.status) for r in ra] == [(r.key, r.point, r.status) for r in rb]
    assert [r.summary for r in ra] == [r.summary for r in rb]
    assert local.ok == 4
