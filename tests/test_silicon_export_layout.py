"""InferenceX exports that write an ep = tp recipe as moe_tp = moe_ep = n and n x n GPUs (simcore.serving.layouts
export_layout; docs/validation.md, "InferenceX exports of expert-parallel recipes")."""

from __future__ import annotations

from simcore.serving.silicon import measurement_from_row
from simcore.serving.layouts import export_layout

IX = "source_file=2026-04-06.csv; measured=2026-03-04"  # an InferenceX export
ROW = {"system": "h200_sxm", "backend": "trtllm", "backend_version": "1.1.0rc2.post2",
       "model_path": "deepseek-ai/DeepSeek-R1", "precision": "fp8", "mode": "agg", "isl": "8192", "osl": "1024",
       "batch_size": "16", "tp_size": "64", "pp_size": "1", "attention_dp_size": "1", "moe_tp_size": "8",
       "moe_ep_size": "8", "silicon_ttft_ms": "100", "silicon_tpot_ms": "10", "silicon_data_source": IX}


def test_a_tp8_ep8_recipe_exported_as_64_gpus_runs_on_8():
    m = measurement_from_row(ROW)  # dsr1-fp8-h200-trt {tp: 8, ep: 8}: tp_size 64, moe 8 x 8 in the export
    assert (m.tp, m.attention_dp, m.ep, m.concurrency) == (8, 1, 8, 16)


def test_its_attention_dp_variant_keeps_the_clients_over_8_ranks():
    # {tp: 8, ep: 8, dp-attn: true, conc 64}: attention_dp_size 64 and batch_size 64 / 64 = 1 in the export
    m = measurement_from_row(dict(ROW, tp_size="1", attention_dp_size="64", batch_size="1"))
    assert (m.tp, m.attention_dp, m.ep, m.concurrency) == (1, 8, 8, 64)
    # the generator's per-rank limits hold for the 8 ranks' 8 clients each: 8 x (8 + 8192 + 500 in 32-token blocks)
    assert m.serving["max_num_seqs"] == 64 and m.serving["max_num_batched_tokens"] == 8 * 8704


def test_rows_of_their_own_layout_are_kept():
    # aiconfigurator's own rows: moe_tp x moe_ep = the worker's GPUs (TensorRT-LLM tp 4 as moe 2 x 2)
    aic = dict(ROW, tp_size="4", moe_tp_size="2", moe_ep_size="2",
               silicon_data_source="source_file=/x/aic-auto-gap-analysis/data/h200_sxm/trtllm/1.1/a.csv")
    assert export_layout(aic) is aic
    # an InferenceX row written as the worker's GPUs (ep = tp: moe 1 x 8) and one without experts split
    for own in (dict(ROW, tp_size="8", moe_tp_size="1"), dict(ROW, tp_size="8", moe_ep_size="1")):
        assert export_layout(own) is own
    # no campaign recorded: read back only where n x n GPUs cannot be one node
    bare = {k: v for k, v in ROW.items() if k != "silicon_data_source"}
    assert export_layout(bare, node=8)["tp_size"] == "8"
    small = dict(bare, tp_size="4", moe_tp_size="2", moe_ep_size="2")
    assert export_layout(small, node=8) is small and export_layout(bare) is bare


def test_bad_layout_values_are_left_for_the_reader_to_refuse():
    for bad in ("inf", "1e400", "nan", "abc", "-8"):
        row = dict(ROW, moe_tp_size=bad, moe_ep_size=bad)
        assert export_layout(row) is row  # no traceback here; measurement_from_row names the field
