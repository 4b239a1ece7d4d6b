"""Rows of the H100 rows' source measured on other GPUs (H200, B200; the held-out check of issue 11):
they map to the right GPU and cluster, simulate without a hardware refusal, price the precisions the GPU
runs natively from its spec sheet, and obey its bandwidth and compute; an unknown system is one line."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import yaml

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.ops.builder import StageBuilder
from simcore.ops.linears import Linear
from simcore.ops.op import nbytes
from simcore.serving.silicon import experiment_for_record, experiment_for_row, measurement_from_row
from simcore.validate.compare import experiments, run
from simcore.validate.fit import without_host
from simcore.validate.readers import read

from conftest import REPO

ROWS = REPO / "tests" / "data" / "validate" / "heldout_rows.json"
GPU_OF = {"h100_sxm": ("h100-sxm", "hgx-h100"), "h200_sxm": ("h200-sxm", "hgx-h200"), "b200_sxm": ("b200", "hgx-b200")}


@pytest.fixture(scope="module")
def outcomes():
    """Every row simulated once at the stored host constants, and once with the host time off (the fitted
    constants and TensorRT-LLM's eager host floor of a prompt step). The ratios below are GPU physics, so the
    clients re-issue at once (no aiperf re-issue delay: with it a TTFT also holds the wait behind other clients'
    prefills, which depends on the decode steps too)."""
    recs = read(ROWS)
    for r in recs:
        r.client = {}
    outs = run(experiments(recs), 1)
    with tempfile.TemporaryDirectory() as tmp:
        bare = without_host(outs, Path(tmp))
        for o in bare:
            o.experiment["serving"]["eager_layer_us"] = 0.0
        bare = run(bare, 1)
    return outs, bare


def _by(outs, system: str, model: str):
    (o,) = [o for o in outs if o.record.gpu == system and o.record.model == model]
    return o


def test_rows_map_to_their_gpu_and_cluster():
    for rec in read(ROWS):
        if rec.gpu not in GPU_OF or rec.concurrency is None:  # no load recorded: refused (below)
            continue
        (exp,) = [o.experiment for o in experiments([rec])]
        gpu, cluster = GPU_OF[rec.gpu]
        run_ = resolve(experiment_from_dict(exp, [], "t"))
        assert (exp["hardware"], run_.system.gpu.name, run_.system.cluster.name) == (gpu, gpu, cluster)


def test_every_known_system_simulates_and_the_unknown_one_is_refused_by_name(outcomes):
    outs, _ = outcomes
    refused = {o.record.gpu: (o.refused, o.result.get("detail", "")) for o in outs if o.refused and o.record.pools is None}
    assert list(refused) == ["gb200"]
    reason, detail = refused["gb200"]
    assert reason == "gpu not in catalog" and "known systems: " in detail and "b200_sxm" in detail
    # of the three disagg rows only the one that records no load at all (no batch_size, no decode pool) is refused
    assert [(o.record.model, o.refused) for o in outs if o.refused and o.record.pools] == \
        [("deepseek-ai/DeepSeek-R1", "no concurrency")]
    (o,) = [o for o in outs if o.refused == "no concurrency"]
    assert "no decode_batch_size x decode_num_workers" in o.result["detail"]
    assert sum(1 for o in outs if not o.refused) == 15


def read_rows() -> list[dict]:
    return json.loads(ROWS.read_text())["rows"]


def test_a_file_of_unknown_systems_only_is_one_error_line(bad, tmp_path):
    f = tmp_path / "gb.json"
    f.write_text(json.dumps({"rows": [read_rows()[0] | {"system": "gb300"}]}))
    bad("validate", f, contains=["system: gb300", "known systems:", "b200_sxm"])


def test_h200_and_b200_decode_faster_than_h100_by_at_most_the_bandwidth_ratio(outcomes):
    """GPU time of a decode step (host off) of bf16 Llama-3.1-8B at 8 clients: memory-bound, so the
    ratio to H100 approaches the HBM ratio (4.8 / 3.35 = 1.43, 8.0 / 3.35 = 2.39) from below: the fixed
    kernel floors (~4.7 us each, ~10 kernels a layer) do not scale, and weigh more on B200's shorter step."""
    _, bare = outcomes
    tpot = {s: _by(bare, s, "meta-llama/Llama-3.1-8B-Instruct").result["latency"]["tpot"]["mean"] for s in GPU_OF}
    h200, b200 = tpot["h100_sxm"] / tpot["h200_sxm"], tpot["h100_sxm"] / tpot["b200_sxm"]
    assert 1.25 < h200 <= 4800 / 3350 + 1e-9
    assert 1.8 < b200 <= 8000 / 3350 + 1e-9
    # and never below the weights streamed once from HBM per step: 8.03e9 params x 2 bytes
    assert tpot["b200_sxm"] * 1e-3 > 8.03e9 * 2 / 8000e9


def test_prefill_follows_compute_not_bandwidth(outcomes):
    """H200 has H100's tensor cores: a compute-bound first token changes little; B200 has 2.27x the bf16
    peak, so TTFT shrinks by at most that."""
    _, bare = outcomes
    ttft = {s: _by(bare, s, "meta-llama/Llama-3.1-8B-Instruct").result["latency"]["ttft"]["mean"] for s in GPU_OF}
    assert ttft["h100_sxm"] / ttft["h200_sxm"] == pytest.approx(1.0, abs=0.25)
    assert 1.5 < ttft["h100_sxm"] / ttft["b200_sxm"] <= 2250 / 989.4 + 1e-9


def test_nvfp4_weights_decode_faster_than_fp8_on_b200(outcomes):
    """Llama-3.1-70B at TP 4, 16 clients, host off: the fp4 deployment streams 0.5625 bytes a weight
    against fp8's 1 (+ its scales); KV (fp8 in both) and 16-bit activations do not shrink, so the step
    gains less than the 1.78x of the weights alone."""
    _, bare = outcomes
    tpot = {o.record.precision: o.result["latency"]["tpot"]["mean"] for o in bare
            if o.record.gpu == "b200_sxm" and o.record.model == "meta-llama/Llama-3.1-70B"}
    assert 1.2 < tpot["fp8"] / tpot["fp4"] < 1 / 0.5625


def test_nvfp4_precision_maps_to_nvfp4_weights_and_an_fp8_kv_cache():
    row = read_rows()[9]  # b200_sxm trtllm Llama-3.1-70B fp4 / nvfp4
    assert (row["system"], row["precision"], row["gemm_quant_mode"]) == ("b200_sxm", "fp4", "nvfp4")
    exp = experiment_for_row(row)
    assert exp["precision"] == {"weights": "nvfp4"} and exp["inference"] == {"kvcache_precision": "fp8"}
    oss = experiment_for_row({**row, "model_path": "openai/gpt-oss-120b", "tp_size": "2"})
    assert oss["precision"] == {"weights": "auto"} and "inference" not in oss  # its MXFP4 checkpoint, its KV default


@pytest.mark.parametrize("hardware, dtype, upcast", [("b200", "fp4", False), ("h100-sxm", "bf16", True)])
def test_an_nvfp4_gemm_is_fp4_math_where_the_gpu_has_it(hardware, dtype, upcast):
    exp = experiment_for_row(read_rows()[9]) | {"hardware": hardware}
    b = StageBuilder(resolve(experiment_from_dict(exp, [], "t")), 0)
    op = b.gemm(Linear("x", 8192, 1024, "nvfp4"), tokens=16, layer=0)
    assert (op.dtype, op.upcast) == (dtype, upcast)
    assert op.weight_bytes == 8192 * 1024 * 4.5 / 8  # 4-bit values + one fp8 scale per 16
    assert nbytes("nvfp4") == 0.5625


def test_an_expert_split_wider_than_tp_means_attention_data_parallel():
    row = [r for r in read_rows() if r["model_path"] == "Qwen/Qwen3-235B-A22B-FP8"][0]
    assert (row["tp_size"], row["moe_tp_size"], "attention_dp_size" in row) == ("1", "2", False)
    assert measurement_from_row(row).attention_dp == 2
    assert experiment_for_row(row)["parallelism"] == {"tp": 1, "pp": 1, "attention_dp": 2}
    dense = read_rows()[0]  # moe_tp 1 = tp: nothing implied
    assert measurement_from_row(dense).attention_dp == 1


def _disagg(model: str) -> dict:
    (row,) = [r for r in read_rows() if r["model_path"] == model and r["mode"] == "disagg"]
    return row


def test_a_pool_that_records_only_tp_and_cannot_hold_the_model_runs_one_node_of_attention_dp():
    """The shared format keeps only each pool's tp_size: DeepSeek-V3 fp8 (~671 GB) on one H200 (141 GB) cannot
    be, so the tp 1 prefill pool runs attention DP x EP over the node's 8 GPUs, said to be assumed; the tp 8
    decode pool holds the model and stays as recorded."""
    rec = measurement_from_row(_disagg("deepseek-ai/DeepSeek-V3"))
    d = experiment_for_record(rec)["serving"]["disaggregation"]
    assert d["prefill_parallelism"] == {"tp": 1, "pp": 1, "attention_dp": 8, "ep": 8}
    assert d["decode_parallelism"] == {"tp": 8, "pp": 1, "attention_dp": 1, "ep": 1}
    # TensorRT-LLM's limits hold per attention-DP rank: 8 x (1 sequence, 1024 + 1500 tokens in 32-token blocks)
    assert d["prefill_limits"] == {"max_num_seqs": 8, "max_num_batched_tokens": 8 * 2528}
    assert "prefill attention DP 8 x EP 8 (one node) assumed" in rec.assumed
    assert "decode attention DP" not in rec.assumed
    # a pool whose layout the row records is never widened: the same row with prefill_attention_dp_size 1 is refused
    # by the simulation (no room for a KV block), not reshaped
    rec = measurement_from_row(_disagg("deepseek-ai/DeepSeek-V3") | {"prefill_attention_dp_size": "1"})
    assert experiment_for_record(rec)["serving"]["disaggregation"]["prefill_parallelism"]["attention_dp"] == 1


def test_a_long_prompt_is_admitted_by_the_prefill_pools_limits(outcomes):
    """12000 prompt tokens exceed TensorRT-LLM's default max_num_tokens 8192 (chunked prefill off) but not the
    prefill workers' 12000 + 1500 the generator writes: every request completes."""
    outs, _ = outcomes
    (o,) = [o for o in outs if o.record.model == "nvidia/Qwen3-32B-NVFP4" and o.record.mode == "disagg"]
    assert not o.refused
    assert o.experiment["serving"]["disaggregation"]["prefill_limits"]["max_num_batched_tokens"] == 13504
    assert o.result["dropped"] == 0 and o.result["latency"]["ttft"]["mean"] > 0


GPU_FIGURES = ("memory.capacity_gib", "memory.bandwidth_gbps", "links.gpu.bandwidth_gbps", "peak_tflops.bf16",
               "peak_tflops.fp8")
CLUSTER_FIGURES = ("gpus_per_node", "inter_node.nic_gbps", "inter_node.nics_per_node")


def _sourced(path: Path, dotted: tuple[str, ...]) -> None:
    """Each figure is in the YAML, positive, and its line carries a comment saying where it comes from."""
    data = yaml.safe_load(path.read_text())
    lines = path.read_text().splitlines()
    for key in dotted:
        node = data
        for part in key.split("."):
            node = node[part]
        assert isinstance(node, (int, float)) and node > 0, (path.name, key)
        leaf = key.split(".")[-1]
        (line,) = [ln for ln in lines if re.match(rf"\s*{leaf}:\s*{re.escape(str(node))}\b", ln)][:1] or [""]
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 5, (path.name, key, line)


@pytest.mark.parametrize("gpu, cluster", [("h100-sxm", "hgx-h100"), ("h200-sxm", "hgx-h200"), ("b200", "hgx-b200")])
def test_hardware_of_the_held_out_gpus_has_every_figure_with_a_source(gpu, cluster):
    figures = GPU_FIGURES + (("peak_tflops.fp4",) if gpu == "b200" else ())
    _sourced(REPO / "hardware" / "gpus" / f"{gpu}.yaml", figures)
    _sourced(REPO / "hardware" / "clusters" / f"{cluster}.yaml", CLUSTER_FIGURES)
