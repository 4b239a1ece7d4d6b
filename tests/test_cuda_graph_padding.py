"""serving.cuda_graph_padding (TensorRT-LLM cuda_graph_config.enable_padding) and the graphs aiconfigurator's generator
wrote by date (docs/serving.md "CUDA-graph padding", docs/validation-log.md "Round 15"). Without padding a decode batch
replays a graph only when its own size was captured; any other size launches op by op (the eager floor), unpadded,
and no padding request holds a slot. Hand-computed on a 3-layer model with the host terms zeroed."""

from __future__ import annotations

import json

import pytest

from simcore.errors import SimcoreError
from simcore.serving.engines import resolve as resolve_engine
from simcore.serving.generator import TEMPLATE_GRAPHS
from simcore.serving.generator import graphs
from simcore.serving.silicon import measurement_from_row
from simcore.serving.sources import generator_day
from simcore.validate.provenance import shipped
from tests.test_moe_prompt_step import _cost, tiny_moe  # noqa: F401  (fixture)
from tests.test_serving import serving_run
from tests.test_serving_engines import ONE

FLOOR = {"engine": "trtllm", "eager_layer_us": 5000.0}  # 3 layers x 5 ms = 15 ms, far above these decodes' kernels
AIC = "source_file=/Users/x/projects/aic-auto-gap-analysis/data/h100_sxm/trtllm/1.3.0rc1/openai_gpt-oss-120b.csv"


def test_without_padding_only_a_captured_size_replays_a_graph(tiny_moe, monkeypatch):  # noqa: F811
    off = _cost(tiny_moe, {**FLOOR, "cuda_graph_padding": False, "cuda_graph_batch_sizes": [1, 2, 4, 8]}, monkeypatch)
    on = _cost(tiny_moe, {**FLOOR, "cuda_graph_batch_sizes": [1, 2, 4, 8]}, monkeypatch)
    # 4 decodes: a graph of their own either way, so the kernels of 4 rows, never the floor
    assert off.time(4, 100.0, 0, 0, 0.0) == pytest.approx(off.gpu_time(4, 100.0, 0, 0, 0.0), rel=1e-12)
    assert off.time(4, 100.0, 0, 0, 0.0) < 15e-3
    assert on.time(4, 100.0, 0, 0, 0.0) == pytest.approx(off.time(4, 100.0, 0, 0, 0.0), rel=1e-12)
    # 5 decodes: padded to the graph of 8 (padding rows hold no context), or launched op by op as 5 rows: the floor
    assert on.time(5, 100.0, 0, 0, 0.0) == pytest.approx(on.gpu_time(8, 100.0 * 5 / 8, 0, 0, 0.0), rel=1e-12)
    assert off.time(5, 100.0, 0, 0, 0.0) == pytest.approx(15e-3, rel=1e-12)
    # past the largest graph both launch op by op
    for cost in (on, off):
        assert cost.time(9, 100.0, 0, 0, 0.0) == pytest.approx(15e-3, rel=1e-12)


def test_without_padding_no_request_holds_a_slot():
    for padding, slots in ((None, 47), (True, 47), (False, 48)):
        serving = {"engine": "trtllm", "max_num_seqs": 48}
        if padding is not None:
            serving["cuda_graph_padding"] = padding
        run = serving_run(ONE, serving)
        _, cfg, prof = resolve_engine(run, run.experiment.serving)
        assert cfg.max_num_seqs == slots and prof.padding == (padding is not False)


def test_padding_needs_an_engine_and_a_bool():
    with pytest.raises(SimcoreError, match=r"serving.cuda_graph_padding: False: needs serving.engine") as e:
        run = serving_run(ONE, {"cuda_graph_padding": False})
        resolve_engine(run, run.experiment.serving)
    assert "\n" not in str(e.value)
    with pytest.raises(SimcoreError, match="cuda_graph_padding"):
        serving_run(ONE, {"engine": "trtllm", "cuda_graph_padding": "sometimes"})


@pytest.mark.parametrize("measured, expected", [
    # until 2026-03-04 the rules' sizes (1..max_batch_size) reached cuda_graph_config.batch_sizes
    ("2026-01-23", {"cuda_graph_batch_sizes": [1, 2, 3, 4, 5, 6], "cuda_graph_padding": False}),
    # from then until 2026-05-12 every engine got the template's defaults
    ("2026-03-04", {"cuda_graph_batch_sizes": list(TEMPLATE_GRAPHS), "cuda_graph_padding": False}),
    ("2026-05-11", {"cuda_graph_batch_sizes": list(TEMPLATE_GRAPHS), "cuda_graph_padding": False}),
    ("2026-05-12", {}),  # the rules' settings reach the engine again: the profile's
    (None, {}),  # no date: the profile's
])
def test_the_generator_graphs_follow_the_date_it_ran(measured, expected):
    source = AIC + (f"; measured={measured}" if measured else "")
    assert graphs(generator_day(source), 6) == expected
    # another campaign's rows (InferenceX's recipes) are not the generator's
    assert graphs(generator_day(f"source_file=2026-03-25.csv; measured={measured}"), 6) == {}


def test_an_aiconfigurator_trtllm_row_gets_its_dated_graphs():
    row = {"system": "h100_sxm", "backend": "trtllm", "backend_version": "1.3.0rc1", "model_path": "openai/gpt-oss-120b",
           "precision": "fp8", "mode": "agg", "isl": "4000", "osl": "1000", "batch_size": "48", "tp_size": "4",
           "silicon_data_source": AIC + "; measured=2026-03-18"}
    s = measurement_from_row(row).serving
    assert s["cuda_graph_batch_sizes"] == list(TEMPLATE_GRAPHS) and s["cuda_graph_padding"] is False
    assert "cuda_graph_padding" not in measurement_from_row({**row, "silicon_data_source": AIC}).serving
    # the shipped provenance dates the 1.3.0rc1 configurations (aiconfigurator's silicon_sample.csv: measured=2026-03-18)
    rows = json.loads(shipped("silicon_provenance.json"))["rows"]
    oss = [e for e in rows if e["system"] == "h100_sxm" and e["backend"] == "trtllm"
           and e["model_path"] == "openai/gpt-oss-120b"]
    assert len(oss) == 5 and all(e["silicon_data_source"].endswith("; measured=2026-03-18") for e in oss)


@pytest.mark.parametrize("measured, isl, tokens", [
    # before 1cc3526b4 (2026-04-01) every generator wrote max_num_tokens = batch + ISL + 1500, in 32-token blocks:
    # 48 + 1024 + 1500 = 2572 -> 2592; from that day + 500: 1572 -> 1600; a row without a day: today's rule
    ("2026-03-18", 1024, 2592), ("2026-04-01", 1024, 1600), (None, 1024, 1600),
])
def test_the_generator_token_budget_follows_the_date_it_ran(measured, isl, tokens):
    row = {"system": "h100_sxm", "backend": "trtllm", "backend_version": "1.3.0rc1", "model_path": "openai/gpt-oss-120b",
           "precision": "fp8", "mode": "agg", "isl": str(isl), "osl": "1000", "batch_size": "48", "tp_size": "4",
           "silicon_data_source": AIC + (f"; measured={measured}" if measured else "")}
    s = measurement_from_row(row).serving
    assert s["max_num_seqs"] == 48 and s["max_num_batched_tokens"] == tokens
    # another campaign's day is not the generator's
    ix = {**row, "silicon_data_source": f"source_file=2026-03-25.csv; measured={measured or '2026-03-18'}"}
    assert measurement_from_row(ix, limits="aiconfigurator").serving["max_num_batched_tokens"] == 1600
