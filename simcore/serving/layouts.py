"""How a silicon row's layout columns (tp_size, attention_dp_size, moe_tp_size, moe_ep_size) are read where an export
wrote them in a convention other than aiconfigurator's own (moe_tp x moe_ep = tp_size x attention_dp_size = the
worker's GPUs): InferenceX's exports of expert-parallel recipes, and vLLM's attention-DP rows (simcore.serving.silicon
reads every row through these; docs/validation.md, "Rows of other GPUs" and "Attention-DP rows count clients per
rank")."""

from __future__ import annotations

from simcore.serving.sources import campaign


def vllm_dp_layout(tp: int, adp: int, moe_tp: int, ep: int) -> tuple[int, int]:
    """(attention tp per rank, ep) of a vLLM attention-DP row. Such rows record the worker's GPUs as tp_size
    and the experts over tp_size x attention_dp_size (moe_tp x moe_ep), but they measure a tp_size-GPU
    server: the MiniMax-M2.5 rows "tp 4, attention_dp 4, ep 16" queue for KV blocks exactly as the 4-GPU
    tp 4 / ep 4 rows do at the same total clients (20-32 s TTFT), which 16 GPUs (a quarter of the experts
    each) cannot, and match their TPOT within 1-6% (docs/validation.md, silicon rows). So the ranks split the
    tp_size GPUs (vLLM --data-parallel-size adp --tensor-parallel-size tp/adp) and the experts spread over
    them. Fields that do not follow that pattern are kept as recorded."""
    if adp > 1 and tp % adp == 0 and moe_tp * ep == tp * adp and ep % adp == 0:
        return tp // adp, ep // adp
    return tp, ep


def export_layout(row: dict, node: int | None = None) -> dict:
    """The row with InferenceX's export of an expert-parallel recipe read back. InferenceX's recipes run tp GPUs with ep
    1 or ep = tp (`.github/configs/nvidia-master.yaml` search spaces: `{tp: 8, ep: 8}`, `{tp: 8, ep: 8, dp-attn:
    true}`), but some of its database exports write the recipe's tp as moe_tp_size, its ep as moe_ep_size and their
    product as tp_size x attention_dp_size: `qwen3.5-fp8-h200-sglang` `{tp: 8, ep: 8}` (2026-03-04) became tp_size
    64, moe 8 x 8, and `dsr1-fp8-h200-trt` `{tp: 8, ep: 8, dp-attn: true}` attention_dp_size 64 with batch_size =
    clients / 64 (its id's silicon_concurrency = batch_size x 64 = the recipe's 64 clients). An ep = tp recipe read
    as the rows' own aiconfigurator layout (moe_tp x moe_ep = the worker's GPUs) has moe_tp 1, so moe_tp = moe_ep = n
    > 1 with tp_size x attention_dp_size = n x n is this export: n GPUs, ep n, attention DP over them where the row
    has any, the clients kept (batch_size per rank rescaled). Applied to InferenceX's rows, and to rows of no recorded
    campaign whose n x n GPUs exceed one node (`node`); other rows are returned as they are."""
    def num(key: str) -> int:
        try:
            return int(float(row.get(key) or 1))
        except (TypeError, ValueError, OverflowError):  # a bad value is refused later, as recorded
            return 0
    n, ep, tp, adp = num("moe_tp_size"), num("moe_ep_size"), num("tp_size"), num("attention_dp_size")
    source = campaign(row.get("silicon_data_source"))
    if not (n == ep > 1 and tp * adp == n * n and row.get("mode", "agg") == "agg"):
        return row
    if source != "inferencex" and not (source is None and node and n * n > node):
        return row
    ranks = n if adp > 1 else 1
    out = dict(row, tp_size=str(n // ranks), attention_dp_size=str(ranks), moe_tp_size="1", moe_ep_size=str(n))
    if adp > 1 and row.get("batch_size"):
        out["batch_size"] = str(num("batch_size") * adp // ranks)
    return out
