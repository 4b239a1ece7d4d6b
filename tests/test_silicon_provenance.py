"""Which benchmark measured a silicon row (silicon_data_source), the client and limits that follows, the
provenance file that puts the column back on the shared rows, and vLLM's async-scheduling admission lag."""

from __future__ import annotations

import json

import pytest

from simcore.serving.engines import get_profile
from simcore.errors import SimcoreError
from simcore.serving.silicon import (AIPERF_CLIENT, INFERENCEX_CLIENT, Refused, experiment_for_record,
                                     experiment_for_row, measurement_from_row)
from simcore.serving.sources import campaign
from simcore.validate.provenance import RowExtras, measured_digest, shipped
from simcore.validate.readers import read
from tests.test_serving import run_checked, serving_run

# a vLLM row as the shared file holds it (no provenance), and the two campaigns' silicon_data_source as published
ROW = {"system": "h100_sxm", "backend": "vllm", "backend_version": "0.18.0", "model_path": "openai/gpt-oss-120b",
       "precision": "fp4", "mode": "agg", "isl": "1024", "osl": "1024", "batch_size": "16", "tp_size": "4",
       "pp_size": "1", "moe_tp_size": "1", "moe_ep_size": "1"}
IX = ("source_file=2026-03-25.csv; model=GPT-OSS-120B; silicon_concurrency=16; measured=2026-03-27T08:01:51Z; "
      "wip=False; image=vllm/vllm-openai:v0.18.0")
AIC = "source_file=/Users/x/projects/aic-auto-gap-analysis/data/h100_sxm/vllm/0.12.0/Qwen_Qwen3-32B.csv"


@pytest.mark.parametrize("source, expected", [
    (IX, "inferencex"),
    ("db-dump/2026-04-27; config_id=633; silicon_concurrency=8", "inferencex"),
    (AIC, "aiconfigurator"),
    ("source_file=qwen3.5-397b-gap-analysis.csv", None),  # another harness: not known
    ("source_file=2026-03-25.csv.bak", None),
    ("", None), (None, None),
])
def test_campaign_reads_the_source_file_of_silicon_data_source(source, expected):
    assert campaign(source) == expected


def test_an_inferencex_row_gets_inferencex_client_lengths_rounds_and_the_engine_defaults():
    rec = measurement_from_row({**ROW, "silicon_data_source": IX})
    assert rec.client == INFERENCEX_CLIENT and rec.range_ratio == 0.8 and rec.requests == 160  # 10 x 16 clients
    e = experiment_for_row({**ROW, "silicon_data_source": IX})
    w = e["workload"]
    # benchmark_serving's random dataset: uniform in [int(0.8 x 1024), 1024] = [819, 1024], for both lengths
    assert w["prompt_tokens"] == w["output_tokens"] == {"dist": "uniform", "low": 819, "high": 1024}
    assert w["requests"] == 160 and w["arrival"] == {"process": "closed", "concurrency": 16, **INFERENCEX_CLIENT}
    # InferenceX's recipe, not aiconfigurator's generator: the engine's own limits (8192 tokens a step) and the
    # recipe's --max-num-seqs=$CONC
    assert e["serving"] == {"engine": "vllm", "engine_version": "0.18.0", "max_num_seqs": 16} and "inference" not in e
    # a recipe's KV cache dtype (simcore.serving.recipes): Llama-3.1-70B fp8 ran fp8 KV; a row's own column wins
    llama = {**ROW, "model_path": "meta-llama/Llama-3.1-70B", "precision": "fp8", "backend_version": ""}
    assert experiment_for_row({**llama, "silicon_data_source": IX})["inference"] == {"kvcache_precision": "fp8"}
    assert "inference" not in experiment_for_row({**llama, "silicon_data_source": IX, "kv_cache_dtype": "auto"})
    # `--limits aiconfigurator` still forces the generator's limits
    forced = experiment_for_row({**ROW, "silicon_data_source": IX}, limits="aiconfigurator")
    assert forced["serving"]["max_num_batched_tokens"] == 16 + 1024 + 1500


def test_rows_without_an_inferencex_source_keep_aiperf_and_the_generator_limits():
    for row in (ROW, {**ROW, "silicon_data_source": AIC}, {**ROW, "silicon_data_source": "x.csv"}):
        e = experiment_for_row(row)
        assert e["workload"]["arrival"] == {"process": "closed", "concurrency": 16, **AIPERF_CLIENT}
        assert e["workload"]["prompt_tokens"] == {"dist": "fixed", "value": 1024} and e["workload"]["requests"] == 320
        assert e["serving"]["max_num_batched_tokens"] == 16 + 1024 + 1500
    # a disagg row from an export keeps its rule-based client (InferenceX's multi-node harness is another one)
    assert measurement_from_row({**ROW, "mode": "disagg", "prefill_tp_size": "4", "decode_tp_size": "4",
                                 "silicon_data_source": IX}).client == AIPERF_CLIENT


def test_provenance_columns_must_be_text():
    for key in ("silicon_data_source", "kv_cache_dtype"):
        with pytest.raises(Refused, match=key):
            measurement_from_row({**ROW, key: 3})


def _rows_file(tmp_path, rows: list[dict], name: str = "rows.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_the_provenance_file_puts_the_columns_back_on_matching_rows(tmp_path):
    cols = ["system", "backend", "model_path", "isl", "batch_size"]
    prov = tmp_path / "prov.json"
    prov.write_text(json.dumps({"key": cols, "rows": [
        {"system": "h100_sxm", "backend": "vllm", "model_path": "openai/gpt-oss-120b", "isl": "1024",
         "batch_size": "16", "silicon_data_source": IX, "kv_cache_dtype": "fp8"}]}))
    extras = RowExtras(provenance=prov)
    other = {**ROW, "batch_size": "32"}
    own = {**ROW, "batch_size": "8", "silicon_data_source": AIC}
    merged = extras.apply([ROW, other, own])
    assert merged[0] == {**ROW, "silicon_data_source": IX, "kv_cache_dtype": "fp8"}
    assert merged[1] == other and merged[2] == own  # no match; a row's own column is kept
    assert extras.with_provenance == 1 and extras.with_layouts == 0 and not extras.notes


def test_disagg_rows_get_the_columns_of_the_full_row_with_their_identity(tmp_path):
    """A disagg row is matched on its MATCH columns and its measured latencies (as numbers): rows that differ only
    in their load (the same configuration) each get their own full row's columns; columns a row has stay; a row
    that matches nothing is kept, with a note when the user named the file. Row order and agg rows stay."""
    d = {"system": "h100_sxm", "backend": "trtllm", "model_path": "m", "mode": "disagg", "isl": "1024", "osl": "128",
         "prefill_tp_size": "1", "decode_tp_size": "4"}
    a, b = {**d, "silicon_ttft_ms": "100.5", "silicon_tpot_ms": "10"}, {**d, "silicon_ttft_ms": "90", "silicon_tpot_ms": "9"}
    full = [{**a, "batch_size": "8", "prefill_attention_dp_size": "4", "silicon_ttft_ms": "100.50"},
            {**b, "batch_size": "16", "decode_tp_size": "8"}]
    extras = RowExtras(disagg=_rows_file(tmp_path, full, "full.json"))
    rows = [b, ROW, a, {**a, "isl": "2048"}]
    merged = extras.apply(rows, "mine.json")
    assert merged[0] == {**b, "batch_size": "16"}  # its own decode_tp_size 4 stays
    assert merged[1] == ROW and merged[3] == rows[3]
    assert merged[2] == {**a, "batch_size": "8", "prefill_attention_dp_size": "4"}
    assert extras.with_layouts == 2
    assert extras.notes == [f"1 disagg row(s) of mine.json match no row of {tmp_path / 'full.json'} (on system, "
                            f"backend, model_path, mode, isl, osl and the measured latencies); kept as they are"]
    # a full row that names no measurement cannot be matched: one error line
    with pytest.raises(SimcoreError, match=r"full.json: rows\[0\]: no measured_digest"):
        RowExtras(disagg=_rows_file(tmp_path, [{**d, "silicon_ttft_ms": "nan"}], "full.json"))


def test_the_shipped_disagg_file_names_rows_by_digest_and_holds_no_latency():
    """simcore/validate/data/silicon_disagg.json: one entry per published disagg row (H100, H200, B200), no
    measured value, and the shared file's 107 H100 disagg rows each find theirs (load, layout, source)."""
    data = json.loads(shipped("silicon_disagg.json"))["rows"]
    assert not any(k in e for e in data for k in ("silicon_ttft_ms", "silicon_tpot_ms"))
    assert all(len(e["measured_digest"]) == 16 and e["mode"] == "disagg" for e in data)
    assert {e["system"] for e in data} == {"h100_sxm", "h200_sxm", "b200_sxm"}
    assert measured_digest({"silicon_ttft_ms": "12.50", "silicon_tpot_ms": 3}) == \
        measured_digest({"silicon_ttft_ms": 12.5, "silicon_tpot_ms": "3.0"}) != \
        measured_digest({"silicon_ttft_ms": 12.5, "silicon_tpot_ms": "3.01"})
    # a disagg row of the shared H100 file as its extract holds it: the DeepSeek-V3 deployment gets its load (6
    # clients), the prefill worker's attention DP 16 and the decode workers' 16-way expert split back
    row = {"system": "h100_sxm", "backend": "trtllm", "backend_version": "0.8.1.post3",
           "model_path": "deepseek-ai/DeepSeek-V3", "precision": "fp8", "mode": "disagg", "isl": "8192", "osl": "1024",
           "gemm_quant_mode": "fp8", "moe_quant_mode": "fp8", "prefill_batch_size": "1", "prefill_num_workers": "1",
           "prefill_tp_size": "1", "decode_batch_size": "2", "decode_num_workers": "3", "decode_tp_size": "16",
           "silicon_ttft_ms": "13693.258112009305", "silicon_tpot_ms": "14.657867551218844"}
    extras = RowExtras()
    (merged,) = extras.apply([row])
    assert extras.with_layouts == 1 and not extras.notes
    assert merged == {**row, "batch_size": "6", "prefill_pp_size": "1", "prefill_attention_dp_size": "16",
                      "prefill_moe_tp_size": "1", "prefill_moe_ep_size": "16", "decode_pp_size": "1",
                      "decode_attention_dp_size": "1", "decode_moe_tp_size": "1", "decode_moe_ep_size": "16",
                      "silicon_data_source": "db-dump/2026-04-27; measured=2026-02-08"}
    assert measurement_from_row(merged).concurrency == 6


def test_the_shipped_files_give_the_inferencex_rows_their_client_through_read(tmp_path):
    """A Llama-3.1-70B fp8 row of the shared file as its extract holds it (configuration columns of a shipped
    InferenceX entry, no source): read with the shipped extras it runs InferenceX's client, 10 rounds, lengths
    uniform in [0.8 L, L] and the recipe's fp8 KV cache; read without them, aiperf's."""
    extras = RowExtras()
    entry = next(e for e in json.loads(shipped("silicon_provenance.json"))["rows"]
                 if e["system"] == "h100_sxm" and e["model_path"] == "meta-llama/Llama-3.1-70B")
    row = {k: v for k, v in entry.items() if k in extras.key}
    assert "silicon_data_source" not in row
    path = _rows_file(tmp_path, [row])
    (ix,), (plain,) = read(path, extras=extras), read(path)
    c, isl, osl = int(row["batch_size"]), int(row["isl"]), int(row["osl"])
    assert (ix.client, ix.range_ratio, ix.requests, ix.kv_cache_dtype) == (INFERENCEX_CLIENT, 0.8, 10 * c, "fp8")
    w = experiment_for_record(ix)["workload"]
    assert w["requests"] == 10 * c and w["arrival"] == {"process": "closed", "concurrency": c, **INFERENCEX_CLIENT}
    assert w["prompt_tokens"] == {"dist": "uniform", "low": int(0.8 * isl), "high": isl}
    assert w["output_tokens"] == {"dist": "uniform", "low": int(0.8 * osl), "high": osl}
    assert (plain.client, plain.range_ratio, plain.requests) == (AIPERF_CLIENT, 1.0, None)
    assert experiment_for_record(plain)["workload"]["requests"] == 20 * c


def test_the_shipped_provenance_names_the_inferencex_rows_of_the_shared_file():
    """simcore/validate/data/silicon_provenance.json (no latencies): the 45 Llama-3.1-70B rows are InferenceX's
    (measured 2025-10-29), every vLLM Qwen3-32B bf16 row is aiconfigurator's aiperf sweep; the recipes' settings live
    in simcore.serving.recipes, not in the file."""
    data = json.loads(shipped("silicon_provenance.json"))
    assert not any(k.startswith("silicon_") and k != "silicon_data_source" for e in data["rows"] for k in e)
    h100 = [e for e in data["rows"] if e["system"] == "h100_sxm"]
    llama = [e for e in h100 if e["model_path"] == "meta-llama/Llama-3.1-70B"]
    assert len(llama) == 45 and all(campaign(e["silicon_data_source"]) == "inferencex" and
                                    e["silicon_data_source"].endswith("measured=2025-10-29") for e in llama)
    assert not any("kv_cache_dtype" in e or "max_num_seqs" in e for e in data["rows"])
    qwen = [e for e in h100 if e["backend"] == "vllm" and e["model_path"] == "Qwen/Qwen3-32B"
            and not e.get("precision")]
    assert qwen and all(campaign(e["silicon_data_source"]) == "aiconfigurator" for e in qwen)
    # the held-out GPUs' configurations are there too (configuration columns and the source only)
    assert {e["system"] for e in data["rows"]} == {"h100_sxm", "h200_sxm", "b200_sxm"}


def test_async_scheduling_admits_a_request_one_step_late(monkeypatch):
    """vLLM >= 0.14 forms step n+1's batch as step n starts. Request B arrives 20 ms into request A's decode
    (256-token prompts, no host time): without the lag it joins the next step, with it the step after, so its
    TTFT grows by exactly one batch-1 decode step; A, arriving at an idle engine, waits for nothing."""
    from simcore.serving.engines import host_fit

    monkeypatch.setitem(host_fit.HOST, "vllm", {"const_us": 0, "per_request_us": 0, "per_token_us": 0})
    assert get_profile("vllm", "0.18.0").admit_lag and not get_profile("vllm", "0.12.0").admit_lag
    wl = {"requests": 2, "arrival": {"process": "fixed", "rate": 1 / 0.05}, "prompt_tokens": {"value": 256},
          "output_tokens": {"value": 64}}
    out = {}
    for version in ("0.12.0", "0.18.0"):  # no host time: the two differ only in admission
        m = run_checked(serving_run(wl, {"engine": "vllm", "engine_version": version})).metrics
        out[version] = (m.first_token[0] - m.arrival[0], m.first_token[1] - m.arrival[1],
                        (m.finish[0] - m.first_token[0]) / 63)
    (a12, b12, tpot), (a18, b18, _) = out["0.12.0"], out["0.18.0"]
    assert a18 == pytest.approx(a12, rel=1e-12)
    assert b18 - b12 == pytest.approx(tpot, rel=0.05)  # one decode step of A (batch 1), ~ its mean gap
    assert b18 - b12 > 0.5e-3


def test_an_inferencex_tensorrt_llm_row_gets_the_client_but_keeps_the_rows_limits():
    """InferenceX's TensorRT-LLM recipes write neither the generator's limits nor the engine defaults."""
    trt = {**ROW, "backend": "trtllm", "backend_version": "1.0.0rc3", "silicon_data_source": IX}
    e = experiment_for_row(trt)
    assert e["workload"]["arrival"] == {"process": "closed", "concurrency": 16, **INFERENCEX_CLIENT}
    assert e["serving"]["max_num_seqs"] == 16 and e["serving"]["max_num_batched_tokens"] == 1568  # 16 + 1024 + 500


MINIMAX = {**ROW, "model_path": "MiniMaxAI/MiniMax-M2.5", "precision": "fp8", "gemm_quant_mode": "fp8",
           "moe_quant_mode": "fp8", "moe_ep_size": "4", "silicon_data_source": IX}


def test_a_recipe_max_num_seqs_replaces_the_engine_default():
    """InferenceX's MiniMax-M2.5 H100 recipe runs `vllm serve --max-num-seqs 256` (simcore.serving.recipes); a row's
    own column wins. 0 or text refuses the row."""
    assert experiment_for_row(MINIMAX)["serving"] == {"engine": "vllm", "engine_version": "0.18.0", "max_num_seqs": 256}
    assert experiment_for_row({**MINIMAX, "max_num_seqs": "300"})["serving"]["max_num_seqs"] == 300
    for bad in ("0", "many"):
        with pytest.raises(Refused, match="max_num_seqs"):
            measurement_from_row({**MINIMAX, "max_num_seqs": bad})


def test_fewer_max_num_seqs_leave_the_sampler_warm_up_memory_to_the_kv_cache():
    """vLLM's profile run samples min(max_num_seqs, 8192) rows of logits; at tp 4 its peak is the sort step,
    38 bytes per logit (0.5 bf16 shard + 2 gathered - 0.5 freed + 4 fp32 + 32 sort buffers), plus the hidden
    states of the 8192 batched tokens and of the sampled rows (at the run's activation dtype: fp8, 1 byte).
    MiniMax-M2.5 (vocab 200,064, hidden 3072) at 256 rows instead of 1024: 38 x 768 x 200,064 + 768 x 3072 x 1 =
    5,841,027,072 bytes more KV cache per GPU."""
    from simcore.config.experiment import experiment_from_dict, resolve
    from simcore.memory.engines import engine_memory

    run = resolve(experiment_from_dict(experiment_for_row(MINIMAX)))
    kv = {n: engine_memory(run, "vllm", max_num_seqs=n).binding.kv for n in (256, 1024)}
    assert kv[256] - kv[1024] == pytest.approx(38 * 768 * 200064 + 768 * 3072 * 1, rel=1e-9)


