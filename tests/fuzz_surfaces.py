"""Hostile inputs for every input surface, and the judge of what the CLI did with them.

A case is the files it needs and the `simcore` argv that reads them (paths relative to the folder
the files are written to, which is the working directory of the run). Cases are drawn from a
`random.Random`, so tests/test_hostile_fuzz.py (through hypothesis) and benchmarks/fuzz.py (a long
campaign) share them. `judge` sorts an outcome into: clean error, ok, traceback, nonsense;
`run_bounded` adds hang, memory, and long simulation (a timeout of a documented long mode).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

STATIC = {"model": "llama-3.1-8b", "hardware": "h100-sxm",
          "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 128, "output_tokens": 16}}
SERVING = {"model": "llama-3.1-8b", "hardware": "h100-sxm",
           "workload": {"kind": "requests", "requests": 20, "arrival": {"process": "poisson", "rate": 50.0},
                        "prompt_tokens": {"dist": "fixed", "value": 64},
                        "output_tokens": {"dist": "fixed", "value": 8}},
           "serving": {"max_num_seqs": 16}}

INTS = [-(10**20), -1, 0, 1, 2, 3, 7, 2**31, 2**63, 10**20, 10**400]
FLOATS = [0.0, -0.5, 0.5, 1.5, 1e-320, 1e308, math.inf, -math.inf, math.nan]
STRINGS = ["", "x", "bogus", "a" * 5000, "../nowhere", "é\u202e", "{", "1e9", "true", "null", "*x"]
OTHERS = [None, True, False, [], {}, [1, 2], {"a": 1}, {"dist": "fixed", "value": 10**20}]
VALUES = INTS + FLOATS + STRINGS + OTHERS

EXPERIMENT_PATHS = [
    "name", "model", "hardware", "cluster", "parallelism.tp", "parallelism.pp", "parallelism.dp", "parallelism.ep",
    "precision.weights", "precision.activations", "inference.kvcache_precision", "inference.kvcache_type",
    "engine.mode", "engine.overlap_policy", "engine.micro_batches", "engine.decode_sample_steps",
    "engine.gpu_memory_utilization", "engine.runtime_overhead_gib", "engine.kernel_launch_us", "engine.cuda_graphs",
    "workload.kind", "workload.bogus", "bogus",
]
STATIC_PATHS = ["workload.batch_size", "workload.prompt_tokens", "workload.output_tokens", "serving.scheduler"]
SERVING_PATHS = [
    "workload.requests", "workload.seed", "workload.arrival.process", "workload.arrival.rate", "workload.arrival.cv",
    "workload.arrival.concurrency", "workload.prompt_tokens.dist", "workload.prompt_tokens.value",
    "workload.prompt_tokens.mean", "workload.prompt_tokens.std", "workload.prompt_tokens.cv",
    "workload.prompt_tokens.min", "workload.prompt_tokens.max", "workload.output_tokens.value",
    "workload.output_tokens.low", "workload.shared_prefix", "workload.shared_prefix.tokens",
    "workload.shared_prefix.groups", "workload.shared_prefix.zipf", "workload.sessions.turns",
    "workload.sessions.think_time_s", "workload.trace", "serving.scheduler", "serving.max_num_seqs",
    "serving.max_num_batched_tokens", "serving.block_size", "serving.watermark", "serving.prefix_caching",
    "serving.iteration_overhead_us", "serving.max_time_s", "serving.slo.ttft_s", "serving.host_tier.enabled",
    "serving.host_tier.capacity_gib", "serving.router", "serving.disaggregation.enabled",
    "serving.disaggregation.prefill_replicas",
]
CONFIG_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
               "intermediate_size", "vocab_size", "max_position_embeddings", "sliding_window", "layer_types",
               "use_sliding_window", "max_window_layers", "tie_word_embeddings", "attention_bias", "torch_dtype",
               "architectures", "model_type", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size",
               "n_shared_experts", "first_k_dense_replace", "moe_layer_freq", "mlp_only_layers", "kv_lora_rank",
               "qk_rope_head_dim", "q_lora_rank", "v_head_dim", "quantization_config", "text_config"]
CONFIGS = ["llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b", "deepseek-v3", "gpt-oss-120b"]
EXPR_TOKENS = ["9", "2.0", "10", "0", "-1", "**", "*", "+", "-", "/", "//", "%", "<", ">", "==", "!=", "in",
               "not", "and", "or", "(", ")", "[", "]", ",", "'a'", "gpus", "parallelism.tp",
               "workload.batch_size", "__import__", "lambda", "x.y", "1e308", "True"]
EXPR_HOSTILE = ["9 ** 9 ** 9", "'a' * 10 ** 10", "not " * 20000 + "1", "2.0 ** 10000 > 1", "1 + " * 50000 + "1",
                "(" * 300 + "1" + ")" * 300, "10 ** 400 / 3 > 1", "[1] * 10 ** 9", "gpus ** gpus ** 99",
                "parallelism.tp ** -10000", "(-8) ** 0.5 > 1", "1 / 0 > 1", "'x' in 5", "__import__('os')"]
FLAGS_PLAN = ["--tp", "--pp", "--max-model-len", "--block-size", "--max-num-batched-tokens", "--gpu-mem-util",
              "--kv-dtype", "--weights", "--gpu", "--model"]
FLAG_VALUES = ["0", "-1", "1", "2", "8", "nan", "inf", "-inf", "1e9", "99999999999999999999", "0.5", "bogus", "",
               "h100-sxm", "fp8", "llama-3.1-8b"]


@dataclass
class Case:
    surface: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    after: list[str] | None = None  # a second argv run when the first exits 0 (its stdout is appended)

    def write(self, folder: Path) -> None:
        for name, data in self.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def _dump(data) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**9).encode()


def _set(data: dict, path: str, value) -> None:
    node = data
    *parents, leaf = path.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


PLAUSIBLE = [1, 2, 4, 8, 16, 64, 0.5, 0.01, 0.99, 100.0, 1000, "vllm", "sarathi", "lognormal", "closed", "gamma",
             "hybrid", "fp8", True, False]


INT_LEAVES = {"tp", "pp", "dp", "ep", "micro_batches", "decode_sample_steps", "batch_size", "prompt_tokens",
              "output_tokens", "requests", "seed", "concurrency", "value", "min", "max", "low", "tokens", "groups",
              "turns", "max_num_seqs", "max_num_batched_tokens", "block_size", "prefill_replicas"}
FLOAT_LEAVES = {"gpu_memory_utilization", "runtime_overhead_gib", "kernel_launch_us", "rate", "cv", "mean", "std",
                "zipf", "think_time_s", "watermark", "iteration_overhead_us", "max_time_s", "ttft_s", "capacity_gib"}
SMALL_INTS = [1, 2, 3, 4, 8, 16, 32, 64, 128, 1000, 4096]
SMALL_FLOATS = [0.001, 0.5, 0.99, 1.0, 3.0, 100.0, 1e6]


def _get(data: dict, path: str):
    node = data
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _value(rng: random.Random):
    pick = rng.random()
    if pick < 0.3:  # valid-looking values: the run goes on and its output is judged
        return rng.choice(PLAUSIBLE)
    if pick < 0.08:  # deep nesting
        v = 1
        for _ in range(rng.choice([5, 40, 200])):
            v = [v]
        return v
    return rng.choice(VALUES)


def _yaml_text_attack(rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:  # alias bomb
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for i in range(1, 9):
            lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
        lines.append("model: llama-3.1-8b\nhardware: h100-sxm\nname: *a8")
        return "\n".join(lines).encode()
    if kind == 1:  # duplicate keys
        return (b"model: llama-3.1-8b\nmodel: qwen3-32b\nhardware: h100-sxm\n"
                b"workload: {batch_size: 1, prompt_tokens: 8, output_tokens: 8}\n")
    if kind == 2:  # not UTF-8
        return _dump(STATIC).replace(b"base", b"b\xff\xfese")[:-1] + b"\xff\n"
    if kind == 3:  # BOM (accepted)
        return b"\xef\xbb\xbf" + _dump(STATIC)
    if kind == 4:  # deep flow nesting
        return b"model: " + b"[" * 5000 + b"]" * 5000 + b"\n"
    if kind == 5:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    return rng.choice([b"", b"- a\n- b\n", b"42\n", b"model: [unclosed\n", b"{a: 1}{"])


def experiment_case(rng: random.Random) -> Case:
    if rng.random() < 0.12:
        return Case("experiment", ["run", "e.yaml", "--json"], {"e.yaml": _yaml_text_attack(rng)})
    serving = rng.random() < 0.5
    data = json.loads(json.dumps(SERVING if serving else STATIC))
    paths = EXPERIMENT_PATHS + (SERVING_PATHS if serving else STATIC_PATHS)
    typed = rng.random() < 0.4
    if typed:  # one change of the right type: the run mostly goes on and its numbers are judged
        path = rng.choice([p for p in paths if p.split(".")[-1] in INT_LEAVES | FLOAT_LEAVES])
        leaf = path.split(".")[-1]
        _set(data, path, rng.choice(SMALL_INTS + (SMALL_FLOATS if leaf in FLOAT_LEAVES else [])))
    else:
        for _ in range(rng.randint(1, 3)):
            _set(data, rng.choice(paths), _value(rng))
    argv = ["run", "e.yaml", "--json"]
    if not typed and rng.random() < 0.3:  # the same attack through --set
        value = _value(rng)
        text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()
        argv += ["--set", f"{rng.choice(paths)}={text}"]
    if rng.random() < 0.1:
        argv += ["--mode", rng.choice(["hybrid", "flattened"])]
    try:
        text = _dump(data)
    except (yaml.YAMLError, RecursionError):
        text = b"{"
    return Case("experiment" if not serving else "serving", argv, {"e.yaml": text})


def config_case(rng: random.Random) -> Case:
    raw = json.loads((REPO / "models" / f"{rng.choice(CONFIGS)}.json").read_text())
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(CONFIG_KEYS + list(raw))
        if rng.random() < 0.15:
            raw.pop(key, None)
        elif key == "layer_types" and rng.random() < 0.5:
            raw[key] = ["sliding_attention"] * rng.choice([1, 5, 200])
        else:
            raw[key] = _value(rng)
    try:
        text = json.dumps(raw).encode()
    except (ValueError, RecursionError):
        text = b"{"
    if rng.random() < 0.05:
        text = rng.choice([b"[" * 100000, b"\xff\xfe{}", b"{\"hidden_size\": NaN}", b"null", text[: len(text) // 2]])
    exp = {**STATIC, "model": "m/config.json"}
    if rng.random() < 0.3:
        exp = {**SERVING, "model": "./m"}
    return Case("config.json", ["run", "e.yaml", "--json"], {"e.yaml": _dump(exp), "m/config.json": text})


def _cell(rng: random.Random, good) -> str:
    if rng.random() < 0.75:
        return str(good)
    return rng.choice(["", "-1", "0", "1e19", "10000000000000000000", "nan", "inf", "abc", "1.5", "true", "1e400",
                       "9" * 5000, " 5 ", "\u0661"])


def trace_case(rng: random.Random) -> Case:
    jsonl = rng.random() < 0.4
    n = rng.choice([0, 1, 3, 6])
    rows = [{"arrival_s": _cell(rng, i * 0.01), "prompt_tokens": _cell(rng, 64), "output_tokens": _cell(rng, 8)}
            for i in range(n)]
    if jsonl:
        lines = []
        for r in rows:
            obj = {}
            for k, v in r.items():
                if rng.random() < 0.15:
                    obj[k] = rng.choice([True, None, [1], {"a": 1}, 1e300, -5, "12"])
                else:
                    try:
                        obj[k] = json.loads(v) if v not in ("", "nan", "inf") else v
                    except ValueError:
                        obj[k] = v
            if rng.random() < 0.1:
                obj["extra"] = 1
            lines.append(json.dumps(obj))
        if rng.random() < 0.1:
            lines.append("[" * 5000 + "]" * 5000)
        body, name = "\n".join(lines).encode(), "t.jsonl"
    else:
        header = ["arrival_s", "prompt_tokens", "output_tokens"]
        if rng.random() < 0.1:
            header.append(rng.choice(["prompt_tokens", "session", "bogus"]))
        out = [",".join(header)] + [",".join(r.values()) + ("," * rng.choice([0, 0, 0, 1, 3])) for r in rows]
        body, name = "\n".join(out).encode(), "t.csv"
        if rng.random() < 0.1:
            body = b"\xef\xbb\xbf" + body
        if rng.random() < 0.05:
            body += b"\n\xff\xfe,1,1"
    exp = json.loads(json.dumps(SERVING))
    exp["workload"]["arrival"] = {"process": "trace"}
    exp["workload"]["trace"] = name
    del exp["workload"]["requests"]
    if rng.random() < 0.1:
        exp["workload"]["arrival"] = {"process": "poisson", "rate": 5.0}  # trace without process: trace
    return Case("trace", ["run", "e.yaml", "--json"], {"e.yaml": _dump(exp), name: body})


def empirical_case(rng: random.Random) -> Case:
    lines = ["length"] if rng.random() < 0.5 else []
    lines += [_cell(rng, rng.randint(1, 500)) for _ in range(rng.choice([0, 1, 4, 10]))]
    exp = json.loads(json.dumps(SERVING))
    exp["workload"]["prompt_tokens"] = {"dist": "empirical", "path": "lengths.csv"}
    body = "\n".join(lines).encode()
    if rng.random() < 0.1:
        body = b"\xff" + body
    return Case("empirical", ["run", "e.yaml", "--json"], {"e.yaml": _dump(exp), "lengths.csv": body})


def _expr(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(EXPR_HOSTILE)
    return " ".join(rng.choice(EXPR_TOKENS) for _ in range(rng.randint(1, 12)))


def sweep_case(rng: random.Random) -> Case:
    base = json.loads(json.dumps(STATIC if rng.random() < 0.6 else SERVING))
    if "serving" in base:
        base["workload"]["requests"] = 5
    sweep: dict = {"name": "s", "base": base}
    axis_paths = ["parallelism.tp", "workload.batch_size", "engine.mode", "workload.arrival.rate",
                  "workload.arrival.concurrency", "workload.requests", "bogus.path", "workload"]
    kind = rng.randrange(6)
    if kind == 5:  # a valid sweep: it runs and its report is judged
        sweep["grid"] = ({"workload.batch_size": [1, 2]} if "serving" not in base else
                         {rng.choice(["workload.requests", "workload.arrival.rate", "serving.max_num_seqs"]): [2, 4]})
    elif kind == 0:  # too many points
        sweep["grid"] = {p: list(range(1, 11)) for p in ["parallelism.tp", "parallelism.pp", "parallelism.dp",
                                                          "parallelism.ep", "workload.batch_size"]}
    else:
        sweep["grid"] = {rng.choice(axis_paths): [_value(rng) if rng.random() < 0.3 else rng.choice([1, 2])
                                                  for _ in range(rng.randint(1, 2))]}
    if kind in (1, 2):
        sweep["filters"] = [{"expr": _expr(rng)}]
    if kind == 3:
        sweep[rng.choice(["set", "points", "zip", "filters", "base"])] = _value(rng)
    text = _dump(sweep) if kind != 4 else rng.choice(
        [b"base: {model: x}\ngrid: &g {a: [1]}\nzip: *g\n", b"name: s\nname: t\nbase: {}\ngrid: {x: [1]}\n"])
    argv = ["sweep", "s.yaml", "--db", "r.sqlite", "--workers", "1", "--no-progress"]
    if rng.random() < 0.2:  # raising the limit over a huge grid asks for a long sweep: not an attack
        argv += ["--max-points", rng.choice(["0", "-5", "1"] + (["100000000000"] if kind else []))]
    return Case("sweep", argv, {"s.yaml": text}, after=["sweep", "report", "r.sqlite"])


def flags_case(rng: random.Random) -> Case:
    argv = ["plan", "--model", "llama-3.1-8b", "--gpu", "h100-sxm"]
    for _ in range(rng.randint(1, 3)):
        argv += [rng.choice(FLAGS_PLAN), rng.choice(FLAG_VALUES)]
    return Case("flags", argv + ["--json"])


def catalog_case(rng: random.Random) -> Case:
    gpu = yaml.safe_load((REPO / "hardware" / "gpus" / "h100-sxm.yaml").read_text())
    for _ in range(rng.randint(1, 2)):
        section = rng.choice(["memory", "peak_tflops", "links", None])
        if section and isinstance(gpu.get(section), dict):
            _set(gpu, f"{section}.{rng.choice(list(gpu[section]))}", _value(rng))
        else:
            gpu[rng.choice(["sm_count", "cost_per_hour_usd", "default_cluster", "vendor"])] = _value(rng)
    exp = {**STATIC, "hardware": "gpus/h100-sxm.yaml"}
    try:
        text = _dump(gpu)
    except (yaml.YAMLError, RecursionError):
        text = b"{"
    case = Case("gpu yaml", ["run", "e.yaml", "--json"], {"e.yaml": _dump(exp), "gpus/h100-sxm.yaml": text})
    if rng.random() < 0.1:
        case.env["SIMCORE_CATALOG"] = "gpus"  # a folder that is no catalog
    return case


SURFACES = {"experiment": experiment_case, "config.json": config_case, "trace": trace_case,
            "empirical": empirical_case, "sweep": sweep_case, "flags": flags_case, "gpu yaml": catalog_case}


# -- the judge -------------------------------------------------------------------------------------

# Output keys whose values may be negative: signed errors of `simcore validate` (simulated / measured - 1),
# vLLM's logged CUDA-graph memory (the capture hands back more cached blocks than its pool takes), the
# time a KV policy saves or costs (docs/results.md) and a training plan's free bytes (fits: false).
SIGNED = ("error", ".cudagraph_bytes", ".time_saved_s", ".time_cost_s", ".free")


def _finite_numbers(data, where="") -> str | None:
    """Where a number in the output is not finite or negative, else None."""
    if isinstance(data, dict):
        for k, v in data.items():
            bad = _finite_numbers(v, f"{where}.{k}")
            if bad:
                return bad
    elif isinstance(data, list):
        for i, v in enumerate(data):
            bad = _finite_numbers(v, f"{where}[{i}]")
            if bad:
                return bad
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        if not math.isfinite(data) or (data < 0 and not where.endswith(SIGNED)):
            return f"{where} = {data}"
    return None


def _refuse_constant(name):
    raise ValueError(f"{name} in JSON output")


CATALOG_HBM = {p.stem: yaml.safe_load(p.read_text())["memory"]["bandwidth_gbps"] * 1e9
               for p in (REPO / "hardware" / "gpus").glob("*.yaml")}


# Dense catalog models: a decode step reads every weight (a MoE step reads only the routed experts).
DENSE = {p.stem for p in (REPO / "models").glob("*.json")
         if not {"num_local_experts", "n_routed_experts", "num_experts"} & set(json.loads(p.read_text()))}


def _sane(argv: list[str], out: str, physics: bool = True) -> str | None:
    """Why a successful run's output is nonsense, or None when it is finite and physically sane."""
    if argv[0] == "sweep":
        if "results in" not in out:
            return "no summary line"
        if "{'" in out or "'mean'" in out:
            return "a Python dict in the report"
        return None
    try:
        data = json.loads(out, parse_constant=_refuse_constant)
    except ValueError as exc:
        return f"output is not valid JSON ({exc})"
    bad = _finite_numbers(data)
    if bad:
        return f"non-finite or negative number: {bad}"
    if argv[0] != "run":
        return None
    if data.get("kind") == "training":
        w = data["workload"]
        if not (data["step_time_s"] > 0 and 0 < data["mfu"] <= data["hfu"] <= 1):
            return f"training step {data['step_time_s']} s with mfu {data['mfu']}, hfu {data['hfu']}"
        if data["tokens_per_step"] != w["global_batch"] * w["sequence_length"]:
            return f"tokens_per_step {data['tokens_per_step']} is not global_batch x sequence_length"
        return None
    if data.get("workload", {}).get("kind") == "requests":
        n = data["workload"]["requests"]
        seen = data["requests_completed"] + data["requests_dropped"] + data["requests_not_arrived"]
        if seen != n:
            return f"{n} requests but {seen} completed, dropped or not arrived"
        if data["requests_completed"] and not 0 < data["ttft_s"]["p50"] <= data["e2e_s"]["p99"]:
            return f"times out of order: ttft p50 {data['ttft_s']['p50']}, e2e p99 {data['e2e_s']['p99']}"
        return None
    if not (data["ttft_s"] > 0 and data["e2e_s"] >= data["ttft_s"] and data["output_tokens_per_s"] > 0):
        return f"times out of order: ttft {data['ttft_s']}, e2e {data['e2e_s']}"
    if physics and data.get("hardware") in CATALOG_HBM and data.get("model") in DENSE \
            and data["workload"]["output_tokens"] > 1:
        floor = data["memory_per_gpu_bytes"]["weights"] / CATALOG_HBM[data["hardware"]]
        if data["decode_step_s"]["mean"] < 0.99 * floor:  # a decode step reads every weight once
            return f"decode step {data['decode_step_s']['mean']:.3g} s < weights / HBM bandwidth = {floor:.3g} s"
    return None


def judge(argv: list[str], rc: int, out: str, err: str, physics: bool = True) -> tuple[str, str]:
    """(outcome class, detail) of one finished run: 'clean error', 'ok', 'traceback' or 'nonsense'."""
    if "Traceback" in err or "internal error" in err:
        return "traceback", err.strip().splitlines()[-1][:300] if err.strip() else ""
    if "ran out of memory" in err:
        return "memory", err.strip()[:300]
    if rc == 2:
        lines = err.splitlines()
        if len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= 1100 and not out:
            return "clean error", lines[0][:300]
        return "nonsense", f"bad error report: {len(lines)} lines, {len(err)} chars: {err[:300]!r}"
    if rc == 1 and argv[0] == "sweep":  # failed points are rows with one line each, not a crash
        lines = err.splitlines()
        if lines and all(ln.startswith(("invalid: ", "failed: ", "filtered: ")) for ln in lines):
            return "clean error", lines[0][:300]
        return "nonsense", err[:300]
    if rc == 0:
        why = _sane(argv, out, physics)
        return ("ok", "") if why is None else ("nonsense", why)
    return "traceback", f"exit {rc}: {err[-300:]!r}"


# -- one bounded run -------------------------------------------------------------------------------

def _vm_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def documented_long(case: Case) -> bool:
    """Flattened mode prices every op on every rank with collectives as transfers: docs/experiments.md
    ("Long simulations") says it may take tens of seconds at large tp, so a timeout there is not a hang."""
    return any("flattened" in a for a in case.argv) or any(b"flattened" in v for v in case.files.values())


def run_bounded(case: Case, folder: Path, timeout_s: float = 10.0, memory_bytes: int = 2 * 2**30) -> tuple[str, str]:
    """Run `case` through simcore.cli.main in a forked child (this process has imported simcore
    already, so a fork costs milliseconds), with `memory_bytes` more address space than now and
    `timeout_s` of wall time. Returns judge()'s (class, detail), or ('hang' | 'memory', detail)."""
    import os
    import resource
    import signal
    import sys
    import time

    from simcore.cli import main

    case.write(folder)
    out_path, err_path = folder / ".stdout", folder / ".stderr"
    limit = _vm_bytes() + memory_bytes
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 98
        try:
            os.chdir(folder)
            os.environ.update(case.env)
            os.environ.pop("COLUMNS", None)
            if case.env:
                from simcore.config.catalog import catalog_root

                catalog_root.cache_clear()
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            out = open(out_path, "w")
            err = open(err_path, "w")
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout, sys.stderr = out, err
            code = main(case.argv)
            if code == 0 and case.after:
                code = main(case.after)
        except MemoryError:
            code = 99
        except BaseException:  # noqa: BLE001 - what escaped main() is exactly what we look for
            import traceback

            traceback.print_exc()
            code = 98
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    start = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout_s:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if documented_long(case):
                return "long simulation", f"flattened mode still running after {timeout_s:g} s"
            return "hang", f"still running after {timeout_s:g} s"
        time.sleep(0.005)
    out = out_path.read_text(errors="replace") if out_path.exists() else ""
    err = err_path.read_text(errors="replace") if err_path.exists() else ""
    if os.WIFSIGNALED(status):
        return "memory" if os.WTERMSIG(status) in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT) else "traceback", \
            f"killed by signal {os.WTERMSIG(status)}: {err[-200:]!r}"
    rc = os.WEXITSTATUS(status)
    if rc == 99 or "MemoryError" in err:
        return "memory", err[-300:]
    if rc == 98:
        return "traceback", err.strip().splitlines()[-1][:300] if err.strip() else "uncaught"
    return judge(case.argv, rc, out, err, physics=case.surface != "gpu yaml")  # a mutated GPU has its own bandwidth


# Surfaces added later live in their own files; imported last, as they use the helpers above.
from tests.fuzz_commands import COMMAND_SURFACES  # noqa: E402
from tests.fuzz_sections import sections_case  # noqa: E402

SURFACES.update({"sections": sections_case, **COMMAND_SURFACES})
