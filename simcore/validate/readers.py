"""Benchmark result files -> Measurement records (simcore/serving/silicon.py), one reader per format.

- vLLM `vllm bench serve --save-result` (vllm/benchmarks/serve.py, main_async and benchmark,
  vLLM 0.11-0.13): one JSON object (or, with --append-result, one per line) with model_id,
  backend, request_rate ("inf" or a number), burstiness, max_concurrency, completed,
  total_input_tokens, total_output_tokens, request_throughput, output_throughput and
  mean_/median_/std_/pNN_ of ttft, tpot, itl, e2el in ms; `--metadata KEY=VALUE` pairs land at the
  top level.
- SGLang `python -m sglang.bench_serving --output-file F.jsonl` (python/sglang/bench_serving.py,
  0.4-0.5): one JSON object per line with backend, request_rate, max_concurrency, random_input_len,
  completed, totals, mean_/median_/std_/p99_ of ttft, tpot, itl (p95 too) and e2e_latency in ms,
  and, against an SGLang server, server_info (its server args: model_path, tp_size, version, ...).
- aiconfigurator's silicon rows ({"about": ..., "rows": [...]}, ../shared/calibration/serving_*.json), with
  the columns the shared extract dropped put back on matching rows when asked (provenance.py).

Deployment facts a file lacks (model, GPU, tp, engine) come from `Facts` (the command's flags);
flags given override the file. A file still lacking one is one error line naming what is missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from simcore.config.validation import read_text
from simcore.errors import SimcoreError
from simcore.serving.silicon import Measurement, Refused, measurement_from_row
from simcore.validate.provenance import RowExtras

STATS = {"mean": "mean", "median": "p50", "p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99"}
# the file's metric spelling -> ours
VLLM_METRICS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2el": "e2e"}
SGLANG_METRICS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2e_latency": "e2e"}
# a benchmark client's --backend that names the server engine (others, e.g. openai, say nothing)
BACKEND_ENGINES = {"vllm": "vllm", "vllm-chat": "vllm", "sglang": "sglang", "sglang-native": "sglang",
                   "sglang-oai": "sglang", "sglang-oai-chat": "sglang", "trt": "trtllm", "tensorrt-llm": "trtllm",
                   "trtllm": "trtllm"}
PLACEHOLDER = {"model": "NAME", "gpu": "NAME", "engine": "vllm|sglang|trtllm", "tp": "N"}


@dataclass(frozen=True)
class Facts:
    """Deployment facts from the command line; None: take the file's."""

    model: str | None = None
    gpu: str | None = None
    tp: int | None = None
    pp: int | None = None
    ep: int | None = None
    engine: str | None = None
    engine_version: str | None = None
    precision: str | None = None


def _num(v) -> float | None:
    """A finite number from a JSON value (numbers or numeric strings), else None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _figure(obj: dict, key: str, where: str) -> float | None:
    """A measured figure (a count, a rate, a time): _num, but a negative one is an error naming it."""
    x = _num(obj.get(key))
    if x is not None and x < 0:
        raise SimcoreError(f"{where}: {key} = {obj[key]!r:.40}: a measured figure must be a number >= 0")
    return x


MAX_DEGREE = 1024  # as the experiment schema's parallel degrees


def _degree(obj: dict, key: str, where: str) -> int | None:
    """A parallel degree (tp, pp, ep, dp) written in a result file: a whole number 1 to MAX_DEGREE, or None."""
    x = _num(obj.get(key))
    if x is None:
        return None
    if not (x == int(x) and 1 <= x <= MAX_DEGREE):
        raise SimcoreError(f"{where}: {key} = {obj[key]!r:.40}: allowed: a whole number 1 to {MAX_DEGREE}")
    return int(x)


def _latency(obj: dict, names: dict, where: str) -> dict:
    """{'ttft': {'mean': ms, 'p50': ms, ...}, ...} from keys like mean_ttft_ms, p99_e2el_ms."""
    out: dict = {}
    for key in obj:
        if not key.endswith("_ms") or _num(obj[key]) is None:
            continue
        stat, _, rest = key[:-3].partition("_")
        if stat not in STATS or rest not in names:
            continue
        out.setdefault(names[rest], {})[STATS[stat]] = _figure(obj, key, where)
    return out


def detect(obj) -> str | None:
    """The format of one parsed JSON object, or None."""
    if isinstance(obj, dict) and isinstance(obj.get("rows"), list):
        return "rows"
    if not isinstance(obj, dict) or "mean_ttft_ms" not in obj:
        return None
    if "mean_e2el_ms" in obj or "model_id" in obj or "endpoint_type" in obj:
        return "vllm"
    if "mean_e2e_latency_ms" in obj or "total_output_tokens_retokenized" in obj:
        return "sglang"
    return None


def _objects(path: Path) -> list:
    """The JSON values of a file: one document, or one per line (JSONL, vLLM's --append-result)."""
    text = read_text(path, "result")  # UTF-8, BOM dropped, size bounded: the one user-file reader
    if not text.strip():
        raise SimcoreError(f"{path}: empty file; expected a vLLM, SGLang or silicon-rows benchmark result")
    try:
        return [json.loads(text)]
    except (ValueError, RecursionError):  # not one document: JSONL, or bad
        pass
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, a number past Python's digit limit
            why = "nested too deeply" if isinstance(exc, RecursionError) else getattr(exc, "msg", str(exc))
            raise SimcoreError(f"{path}: line {i}: not JSON ({why:.120}); expected a vLLM --save-result JSON, "
                               f"an SGLang --output-file JSONL or a silicon-rows JSON") from None
    return out


def _load(obj: dict, rec: Measurement, stats_names: dict) -> None:
    """Load, lengths and measured figures shared by the vLLM and SGLang readers."""
    where = rec.source
    rec.latency = _latency(obj, stats_names, where)
    done = _figure(obj, "completed", where)
    rec.requests = int(done) if done else None
    if done:
        tin, tout = _figure(obj, "total_input_tokens", where), _figure(obj, "total_output_tokens", where)
        rec.isl = round(tin / done) if tin else None
        rec.osl = round(tout / done) if tout else None
    thr = {"requests_per_s": _figure(obj, "request_throughput", where),
           "output_tokens_per_s": _figure(obj, "output_throughput", where)}
    rec.throughput = {k: v for k, v in thr.items() if v is not None}
    # "inf", Infinity: None
    rate, conc = _figure(obj, "request_rate", where), _figure(obj, "max_concurrency", where)
    if rate is not None and conc is not None:
        rec.refused = "rate with max_concurrency"  # open loop capped by a semaphore: not expressible
    elif rate is not None:
        rec.rate = rate
    else:  # every request sent at once, a semaphore of max_concurrency (or none): closed loop
        rec.concurrency = int(conc) if conc else rec.requests
    if obj.get("ramp_up_strategy"):
        rec.refused = "ramp-up"
    if str(obj.get("request_rate")) == "trace":
        rec.refused = "trace replay"


def _text(v) -> str | None:
    """A name written in a result file (model, version), or None when it is not text."""
    return v if isinstance(v, str) and v else None


def read_vllm(obj: dict, source: str) -> Measurement:
    rec = Measurement(source=source, model=_text(obj.get("model_id")),
                      engine=BACKEND_ENGINES.get(str(obj.get("backend") or obj.get("endpoint_type"))))
    _load(obj, rec, VLLM_METRICS)
    b = _num(obj.get("burstiness"))
    rec.burstiness = b if b and b > 0 else 1.0
    _metadata(obj, rec)
    return rec


def read_sglang(obj: dict, source: str) -> Measurement:
    info = obj.get("server_info") if isinstance(obj.get("server_info"), dict) else {}
    if isinstance(info.get("decode"), list) and info["decode"] and isinstance(info["decode"][0], dict):
        info = info["decode"][0]  # a disaggregated deployment: its decode server
    engine = "sglang" if info else BACKEND_ENGINES.get(str(obj.get("backend")))
    rec = Measurement(source=source, model=_text(info.get("model_path") or obj.get("model_id") or obj.get("model")),
                      engine=engine, engine_version=_text(info.get("version")), tp=_degree(info, "tp_size", source))
    rec.pp, rec.ep = _degree(info, "pp_size", source) or 1, _degree(info, "ep_size", source) or 1
    if info.get("disaggregation_mode") in ("prefill", "decode"):
        rec.mode = "disagg"
    dp = _degree(info, "dp_size", source)
    if dp and dp > 1:
        rec.attention_dp = int(dp) if info.get("enable_dp_attention") else rec.attention_dp
        if not info.get("enable_dp_attention"):
            rec.refused = "data-parallel replicas"
    _load(obj, rec, SGLANG_METRICS)
    _metadata(obj, rec)
    return rec


def _metadata(obj: dict, rec: Measurement) -> None:
    """Deployment facts written into the file (vLLM's --metadata gpu=h100-sxm tp=2 ...)."""
    for key in ("gpu", "engine", "engine_version", "precision"):
        if isinstance(obj.get(key), str) and obj[key]:
            setattr(rec, key, obj[key])
    for key in ("tp", "pp", "ep"):
        v = _degree(obj, key, rec.source)
        if v:
            setattr(rec, key, v)


def _apply(rec: Measurement, facts: Facts) -> None:
    for key, v in vars(facts).items():
        if v is not None:
            setattr(rec, key, v)


def read(path: str | Path, facts: Facts = Facts(), limits: str | None = None,
         extras: RowExtras | None = None) -> list[Measurement]:
    """Every record of one result file, the flags' facts applied; bad files raise SimcoreError. extras: the
    columns the shared silicon extract dropped, merged into a rows file's matching rows (provenance.py)."""
    path = Path(path)
    if path.is_dir():
        raise SimcoreError(f"{path}: is a folder; give result files (vLLM --save-result JSON, SGLang "
                           f"--output-file JSONL, silicon-rows JSON)")
    if not path.exists():
        raise SimcoreError(f"{path}: no such file")
    out: list[Measurement] = []
    objs = _objects(path)
    for i, obj in enumerate(objs, 1):
        fmt = detect(obj)
        where = f"{path}" if len(objs) == 1 else f"{path}:{i}"
        if fmt is None:
            keys = ", ".join(list(obj)[:6]) if isinstance(obj, dict) else type(obj).__name__
            raise SimcoreError(f"{where}: unknown result format (keys: {keys}); expected a vLLM --save-result "
                               f"JSON (mean_ttft_ms, model_id, ...), an SGLang bench_serving JSONL "
                               f"(mean_ttft_ms, mean_e2e_latency_ms, ...) or silicon rows ({{'rows': [...]}})")
        if fmt == "rows":
            rows = obj["rows"]
            if extras is not None and all(isinstance(r, dict) for r in rows):
                rows = extras.apply(rows, path.name)
            for j, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise SimcoreError(f"{path}: rows[{j}]: expected a mapping of strings, got {type(row).__name__}")
                try:
                    rec = measurement_from_row(row, source=f"{path}#{j}", limits=limits)
                except Refused as exc:
                    rec = Measurement(source=f"{path}#{j}", refused=exc.reason)
                _apply(rec, facts)
                out.append(rec)
            continue
        rec = (read_vllm if fmt == "vllm" else read_sglang)(obj, where)
        _apply(rec, facts)
        missing = [name for name, v in (("model", rec.model), ("gpu", rec.gpu), ("engine", rec.engine))
                   if not v]
        if rec.tp is None:
            missing.append("tp")
        if missing:
            raise SimcoreError(f"{where}: the {fmt} result lacks {', '.join(missing)}; pass "
                               + " ".join(f"--{m} {PLACEHOLDER[m]}" for m in missing))
        if not rec.latency:
            raise SimcoreError(f"{where}: no measured latencies (mean_ttft_ms, ...) in the {fmt} result")
        out.append(rec)
    return out
