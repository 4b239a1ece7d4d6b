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


ADP4 = {"parallelism": {"tp": 1, "attention_dp": 4, "ep": 4}}  # 4 attention-DP ranks sharing the experts


def test_under_attention_dp_each_rank_pads_its_own_batch(tiny_moe, monkeypatch):  # noqa: F811
    """TensorRT-LLM's attention-DP ranks allgather their batch sizes and all pad to the captured size of the largest
    (model_engine.py _get_padded_batch): a replica of 12 decodes over 4 ranks is 3 a rank, padded to 4, so the step is
    the replica's 16 rows, not the 16 the replica total would pad to past 8, nor an eager step."""
    on = _cost(tiny_moe, {**FLOOR, "cuda_graph_batch_sizes": [1, 2, 4, 8]}, monkeypatch, **ADP4)
    assert on.time(12, 100.0, 0, 0, 0.0) == pytest.approx(on.gpu_time(16, 100.0 * 12 / 16, 0, 0, 0.0), rel=1e-12)
    assert on.time(12, 100.0, 0, 0, 0.0) < 15e-3  # 3 a rank has a graph: never the floor
    # 36 decodes: 9 a rank, past the largest graph (8): op by op
    assert on.time(36, 100.0, 0, 0, 0.0) == pytest.approx(15e-3, rel=1e-12)
    # without padding a graph replays only where every rank holds the same captured size
    off = _cost(tiny_moe, {**FLOOR, "cuda_graph_padding": False, "cuda_graph_batch_sizes": [1, 2, 4, 8]}, monkeypatch,
                **ADP4)
    assert off.time(16, 100.0, 0, 0, 0.0) == pytest.approx(off.gpu_time(16, 100.0, 0, 0, 0.0), rel=1e-12)
    assert off.time(15, 100.0, 0, 0, 0.0) == pytest.approx(15e-3, rel=1e-12)  # ranks of 4, 4, 4 and 3


def test_under_attention_dp_every_rank_holds_a_padding_slot(tiny_moe):  # noqa: F811
    """max_num_seqs is the replica's: 4 ranks of 12 slots each pad (12 has no graph of its own) and each rank's padding
    request holds one of its own slots; ranks of one slot each never pad, so none is held."""
    for seqs, slots in ((48, 44), (4, 4)):
        run = serving_run(ONE, {"engine": "trtllm", "max_num_seqs": seqs}, model=tiny_moe, **ADP4)
        _, cfg, _ = resolve_engine(run, run.experiment.serving)
        assert cfg.max_num_seqs == slots
