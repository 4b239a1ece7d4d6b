"""Hostile command lines and files for the commands added after the first fuzzer (tests/fuzz_surfaces.py):
plan/recommend --training, recommend's serving mode, plan's engine flags, `simcore validate` on mutated
vLLM / SGLang / silicon-row files, `simcore calibrate` on a mutated microbenchmark file, `simcore
profile` without PyTorch, and Hugging Face ids that are not cached (HF_HUB_OFFLINE=1: no network)."""

from __future__ import annotations

import json
import random

from tests.fuzz_surfaces import CONFIG_KEYS, FLAG_VALUES, REPO, STATIC, Case, _dump, _value

HF_OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_HOME": "hf-home"}  # an empty cache under the case's folder
TRAINING_FLAGS = {"--tp": ["1", "2", "8"], "--pp": ["1", "2", "4"], "--dp": ["1", "2", "8"], "--cp": ["1", "2"],
                  "--ep": ["1", "2"], "--micro-batch": ["1", "2"], "--global-batch": ["1", "8", "64", "3"],
                  "--seq-len": ["128", "2048", "1000000"], "--optimizer": ["adam", "sgd", "lion"],
                  "--recompute": ["none", "full", "selective", "all"], "--zero": ["0", "1", "3", "4", "0,1,2,3"],
                  "--schedule": ["gpipe", "1f1b", "interleaved", "zb"], "--virtual-stages": ["1", "2", "1000"],
                  "--sequence-parallel": ["true", "false", "maybe"], "--mode": ["analytical", "hybrid", "warp"],
                  "--overlap": ["all", "none", "dp_grad", "bogus"], "--cluster": ["hgx-h100", "nowhere"]}
RECOMMEND_TRAINING = {**TRAINING_FLAGS, "--tp": ["1,2", "1,2,4,8", "3", ""], "--pp": ["1", "1,2", "0"],
                      "--gpus": ["8", "1", "0", "-8", "7"], "--zero": ["0,1,2,3", "1", "5"], "--top": ["1", "0"]}
RECOMMEND_SERVING = {"--rate": ["1", "5", "0", "-1", "nan", "inf", "1e9"], "--ttft-slo": ["p90:1", "0.5", "p100:1",
                     "p0:1", "p90:", "x:1", "p90:-1", "p99.9:2"], "--tpot-slo": ["p99:0.05", "0.1", "p50:0", "nan"],
                     "--goodput": ["0.9", "1", "0", "1.5", "-0.1"], "--kv-dtypes": ["auto,fp8", "fp8", "bogus", ""],
                     "--batched-tokens": ["2048,8192", "0", "16", "x"], "--disagg": ["2", "0", "-1", "99"],
                     "--requests": ["10", "0", "1"], "--arrival": ["poisson", "gamma", "closed", "bogus"],
                     "--arrival-cv": ["2", "0", "-1"], "--input-len": ["128", "0", "10000000"],
                     "--output-len": ["16", "0"], "--max-num-seqs": ["8", "0"], "--simulate-top": ["1", "0"],
                     "--trace": ["t.csv", "missing.csv"], "--max-gpus": ["2", "0"], "--seed": ["1", "-1"]}
PLAN_ENGINE = {"--engine": ["vllm", "sglang", "trtllm", "tgi", ""], "--block-size": ["16", "0", "3", "100000"],
               "--max-num-seqs": ["1", "256", "0", "-3", "1e9"], "--max-num-batched-tokens": ["8192", "0", "1"],
               "--max-model-len": ["4096", "0", "99999999"], "--gpu-mem-util": ["0.9", "0", "1.5", "nan"],
               "--kv-dtype": ["fp8", "auto", "int3"], "--enforce-eager": None, "--tp": ["1", "2", "3"]}
VALIDATE_FILES = ["vllm_llama8b_c16.json", "vllm_metadata_rate.json", "sglang_qwen32b.jsonl", "silicon_rows.json"]
HF_IDS = ["meta-llama/Llama-3.1-8B", "org/name", "Qwen/Qwen3-32B", "a/b/c", "org/", "/name", "org/na me",
          "../../etc/passwd", "org/" + "x" * 300, "hf://org/name"]


def _flags(rng: random.Random, table: dict, n: int) -> list[str]:
    argv = []
    for flag in rng.sample(list(table), min(n, len(table))):
        values = table[flag]
        if values is None:
            argv.append(flag)
        else:
            argv += [flag, rng.choice(values) if rng.random() < 0.75 else rng.choice(FLAG_VALUES)]
    return argv


def plan_training_case(rng: random.Random) -> Case:
    argv = ["plan", "--training", "--model", rng.choice(["llama-3.1-8b", "mixtral-8x7b"]), "--gpu", "h100-sxm"]
    return Case("plan --training", argv + _flags(rng, TRAINING_FLAGS, rng.randint(1, 4)) + ["--json"])


def recommend_training_case(rng: random.Random) -> Case:
    argv = ["recommend", "--training", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8",
            "--global-batch", "16", "--seq-len", "1024", "--tp", "1,2", "--zero", "1"]
    return Case("recommend --training", argv + _flags(rng, RECOMMEND_TRAINING, rng.randint(1, 3)) + ["--json"])


def recommend_serving_case(rng: random.Random) -> Case:
    argv = ["recommend", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--max-gpus", "1", "--rate", "2",
            "--requests", "10", "--input-len", "128", "--output-len", "16", "--simulate-top", "1",
            "--kv-dtypes", "auto", "--batched-tokens", "2048"]
    trace = "arrival_s,prompt_tokens,output_tokens\n0,64,8\n0.1,32,4\n".encode()
    if rng.random() < 0.2:
        trace = rng.choice([b"", b"arrival_s\n1\n", b"\xff\xfe", b"arrival_s,prompt_tokens,output_tokens\n-1,0,0\n"])
    return Case("recommend serving", argv + _flags(rng, RECOMMEND_SERVING, rng.randint(1, 3)) + ["--json"],
                {"t.csv": trace})


def plan_engine_case(rng: random.Random) -> Case:
    argv = ["plan", "--model", "llama-3.1-8b", "--gpu", "h100-sxm"]
    return Case("plan --engine", argv + _flags(rng, PLAN_ENGINE, rng.randint(1, 4)) + ["--json"])


def _mutate_record(rng: random.Random, rec: dict) -> None:
    for _ in range(rng.randint(1, 3)):
        if not rec:
            return
        key = rng.choice(list(rec))
        if rng.random() < 0.15:
            rec.pop(key)
        elif isinstance(rec[key], dict) and rec[key] and rng.random() < 0.5:
            _mutate_record(rng, rec[key])
        else:
            rec[key] = rng.choice([_value(rng), "0", "-1", "nan", "1e400", 0, -5, 1e300, "abc", None, "h100_sxm"])


def validate_case(rng: random.Random) -> Case:
    name = rng.choice(VALIDATE_FILES)
    text = (REPO / "tests" / "data" / "validate" / name).read_text()
    if name.endswith(".jsonl"):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        _mutate_record(rng, rng.choice(records))
        body = "\n".join(json.dumps(r) for r in records)
    elif name == "silicon_rows.json":
        doc = json.loads(text)
        doc["rows"] = doc["rows"][1:3]  # two quick aggregated rows (the disaggregated one is left out)
        _mutate_record(rng, rng.choice(doc["rows"]) if rng.random() < 0.9 else doc)
        body = json.dumps(doc)
    else:
        doc = json.loads(text)
        _mutate_record(rng, doc)
        body = json.dumps(doc)
    data = body.encode()
    if rng.random() < 0.08:
        data = rng.choice([b"", b"[]", b"{}", b"\xff\xfe", data[: len(data) // 2], b"[" * 100000])
    argv = ["validate", name, "--jobs", "1", "--requests", "4", "--json"]
    if name.startswith("vllm_llama8b") and rng.random() < 0.8:
        argv += ["--gpu", "h100-sxm", "--tp", "1"]
    if rng.random() < 0.15:  # fit the host constants to the (mutated) records
        argv += ["--fit", "--profile-out", rng.choice(["p.yaml", "", "sub/p.yaml", name])]
    if rng.random() < 0.3:
        flag = rng.choice(["--tp", "--pp", "--ep", "--engine", "--engine-version", "--precision", "--every",
                           "--only", "--requests", "--gpu", "--model"])
        argv += [flag, rng.choice(HF_IDS if flag == "--model" and rng.random() < 0.5 else FLAG_VALUES)]
    files = {name: data}
    if rng.random() < 0.2:  # the merged provenance / layout files, given by the user (or turned off)
        flag = rng.choice(["--provenance", "--disagg-rows", "--no-provenance"])
        if flag == "--no-provenance":
            argv.append(flag)
        else:
            files["extra.json"] = rng.choice([b"", b"{", b"[]", b'{"rows": 3}', b'{"rows": [1]}', b'{"key": "x", "rows": []}',
                                              b'{"rows": [{"system": {"a": 1}}]}', data])
            argv += [flag, rng.choice(["extra.json", "missing.json", ""])]
    return Case("validate", argv, files, env=HF_OFFLINE)


def calibrate_case(rng: random.Random) -> Case:
    src = REPO.parent / "shared" / "calibration" / "h100_microbench.json"
    doc = json.loads(src.read_text()) if src.is_file() else {"meta": {}, "device": {}, "gemm": []}
    for _ in range(rng.randint(1, 3)):
        section = rng.choice(["gemm", "decode_attn", "prefill_attn", "device", "meta", None])
        if section is None:
            doc[rng.choice(list(doc) + ["bogus"])] = _value(rng)
        elif isinstance(doc.get(section), list) and doc[section] and rng.random() < 0.85:
            row = rng.choice(doc[section])
            if isinstance(row, dict) and row:
                row[rng.choice(list(row))] = rng.choice([_value(rng), 0, -1.0, 1e-300, 1e300, "nan"])
        elif isinstance(doc.get(section), dict) and doc[section]:
            doc[section][rng.choice(list(doc[section]))] = _value(rng)
        else:
            doc[section] = rng.choice([[], {}, None, [1], _value(rng)])
    try:
        data = json.dumps(doc).encode()
    except (ValueError, RecursionError):
        data = b"{"
    argv = ["calibrate", "b.json", "--gpu", rng.choice(["h100-sxm"] * 4 + ["a100-80gb-sxm", "nowhere", ""]),
            "--out", "out", "--json"]
    if rng.random() < 0.2:
        argv += ["--name", rng.choice(["x", "", "../escape", "a/b", "é", "h100-calibrated"])]
    return Case("calibrate", argv, {"b.json": data})


def profile_case(rng: random.Random) -> Case:
    argv = ["profile", "--out", rng.choice(["d", "", "f.txt", "/proc/nowhere"])]
    if rng.random() < 0.5:
        argv += rng.choice([["--quick"], ["--gpus", rng.choice(["1", "0", "-1", "x"])]])
    if rng.random() < 0.4:  # another GPU's shapes (`--shapes`): unreadable, empty or malformed files
        argv += ["--shapes", rng.choice(["s.json", "f.txt", "missing.json", ""])]
    shapes = rng.choice([b"{", b"[]", b"{}", b'{"gemm": []}', b'{"gemm": [{"M": 1, "K": 2}]}',
                         b'{"gemm": [{"M": -1, "K": 2, "N": 3}]}', b'{"decode_attn": [{"B": true, "L": 1, "hq": 1, "hkv": 1, "hd": 1}]}',
                         b'{"gemm": [{"M": 1, "K": 16, "N": 16}]}'])
    return Case("profile", argv, {"f.txt": b"x", "s.json": shapes})


def _cached(rng: random.Random, model: str) -> dict[str, bytes]:
    """A Hugging Face cache holding `model` (org/name): refs/main and a snapshot's mutated config.json."""
    raw = json.loads((REPO / "models" / "qwen2.5-7b.json").read_text())
    for _ in range(rng.choice([0, 1, 2])):
        raw[rng.choice(CONFIG_KEYS)] = _value(rng)
    try:
        config = json.dumps(raw).encode()
    except (ValueError, RecursionError):
        config = b"{"
    repo = "hf-home/hub/models--" + model.replace("/", "--")
    ref = rng.choice(["abc", "abc", "abc\n", "", "../../..", "nowhere"])
    return {f"{repo}/refs/main": ref.encode(), f"{repo}/snapshots/abc/config.json": config}


def hf_case(rng: random.Random) -> Case:
    model = rng.choice(HF_IDS)
    files = _cached(rng, "org/cached") if rng.random() < 0.4 else {}
    if files:
        model = rng.choice(["org/cached", "ORG/Cached"])
    kind = rng.randrange(3)
    if kind == 0:
        return Case("hf id", ["plan", "--model", model, "--gpu", "h100-sxm", "--json"], files, env=HF_OFFLINE)
    if kind == 1:
        return Case("hf id", ["recommend", "--model", model, "--gpus", "h100-sxm", "--json"], files, env=HF_OFFLINE)
    files["e.yaml"] = _dump({**STATIC, "model": model})
    return Case("hf id", ["run", "e.yaml", "--json"], files, env=HF_OFFLINE)


COMMAND_SURFACES = {"plan --training": plan_training_case, "recommend --training": recommend_training_case,
                    "recommend serving": recommend_serving_case, "plan --engine": plan_engine_case,
                    "validate": validate_case, "calibrate": calibrate_case, "profile": profile_case,
                    "hf id": hf_case}
