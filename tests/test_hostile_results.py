"""Issue 16, second fuzz round (tests/fuzz_sections.py, tests/fuzz_commands.py): the readers of
`simcore validate` (vLLM, SGLang and silicon result files) and `simcore calibrate` (microbenchmark
files). Each case once gave a traceback, NaN in the output or a silently wrong record; now each is
one 'error: ...' line and exit 2, or a refused and counted row.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _bench(tmp_path, mutate) -> str:
    """A small microbenchmark file in the shared format (three gemm rows, one decode row), mutated."""
    doc = {"meta": {"l2_bytes": 52428800}, "device": {"copy_rw_GBps": 3000.0},
           "gemm": [{"M": m, "K": 4096, "N": 4096, "ms": 0.02 * m} for m in (1, 64, 4096)],
           "decode_attn": [{"B": 1, "L": 4096, "hq": 32, "hkv": 8, "hd": 128, "ms": 0.02}]}
    mutate(doc)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("mutate, contains", [
    (lambda d: d["device"].update(copy_rw_GBps=-3e19), ["device.copy_rw_GBps", "-3e+19", "a number > 0"]),
    (lambda d: d["device"].update(h2d_GBps="fast"), ["device.h2d_GBps", "'fast'", "a number > 0"]),
    (lambda d: d.update(device=[1]), ["device", "an object"]),
    (lambda d: d.update(meta="x"), ["meta", "an object"]),
    (lambda d: d["decode_attn"][0].update(backend={"a": 1}), ["decode_attn[0].backend", "text"]),
    (lambda d: d["gemm"][1].update(M=1e300), ["gemm[1].M", "1e+300", "1 to 1099511627776"]),
    (lambda d: d["gemm"][1].update(ms=1e30), ["gemm[1].ms", "1e+30", "1e-06 to 10000000"]),
    (lambda d: d["device"].update(copy_rw_GBps=0.5), ["device.copy_rw_GBps", "0.5", "3350", "0.1%"]),
    (lambda d: d["device"].update(copy_rw_GBps=10**400), ["device.copy_rw_GBps", "10000", "at most 10000000"]),
    (lambda d: d["meta"].update(l2_bytes=1e308), ["meta.l2_bytes", "1e+308", "0 to 1099511627776"]),
])
def test_calibrate_checks_the_device_meta_and_backend_fields(bad, tmp_path, mutate, contains):
    bad("calibrate", _bench(tmp_path, mutate), "--gpu", "h100-sxm", "--out", str(tmp_path / "out"),
        contains=contains)


@pytest.mark.parametrize("key, value", [("isl", "1e400"), ("osl", "inf"), ("tp_size", [2]),
                                        ("silicon_ttft_ms", "-inf"), ("silicon_tpot_ms", "nan"),
                                        ("silicon_ttft_ms", "-5"), ("backend", ["vllm"]), ("batch_size", "-8"),
                                        ("mode", -5), ("mode", "agg ")])
def test_a_silicon_row_with_a_bad_value_is_refused_not_a_crash(cli, tmp_path, key, value):
    doc = json.loads((REPO / "tests" / "data" / "validate" / "silicon_rows.json").read_text())
    doc["rows"] = doc["rows"][1:2]  # the vLLM row
    doc["rows"][0][key] = value
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(doc))
    r = cli("validate", str(path), "--jobs", "1", "--requests", "4", "--json")
    assert r.rc == 0, r.err
    report = json.loads(r.out)  # strict JSON: no Infinity or NaN
    assert [(rec["status"], rec["reason"]) for rec in report["records"]] == [("refused", "bad value")]


@pytest.mark.parametrize("key, value", [("p99_itl_ms", -5.0), ("mean_ttft_ms", -1), ("completed", -64),
                                        ("total_output_tokens", -8192), ("max_concurrency", -16)])
def test_a_negative_figure_in_a_vllm_result_is_one_line(bad, tmp_path, key, value):
    doc = json.loads((REPO / "tests" / "data" / "validate" / "vllm_llama8b_c16.json").read_text())
    doc[key] = value
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(doc))
    bad("validate", str(path), "--gpu", "h100-sxm", "--tp", "1", "--jobs", "1", "--requests", "4",
        contains=[key, str(value), ">= 0"])


@pytest.mark.parametrize("text, contains", [("[" * 100000 + "]" * 100000, "nested too deeply"),
                                            ('{"mean_ttft_ms": ' + "9" * 5000 + "}", "digits")])
def test_validate_and_calibrate_refuse_json_too_deep_or_too_long_in_one_line(bad, tmp_path, text, contains):
    path = tmp_path / "result.json"
    path.write_text(text)
    bad("validate", str(path), contains=[str(path), contains])
    bad("calibrate", str(path), "--gpu", "h100-sxm", "--out", str(tmp_path / "out"), contains=[str(path), contains])


@pytest.mark.parametrize("key", ["backend", "backend_version", "model_path", "system", "precision"])
def test_a_silicon_row_with_a_number_where_text_belongs_is_refused(cli, tmp_path, key):
    doc = json.loads((REPO / "tests" / "data" / "validate" / "silicon_rows.json").read_text())
    doc["rows"] = doc["rows"][1:2]
    doc["rows"][0][key] = -5
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(doc))
    r = cli("validate", str(path), "--jobs", "1", "--requests", "4", "--json")
    assert r.rc == 0, r.err
    assert [(rec["status"], rec["reason"]) for rec in json.loads(r.out)["records"]] == [("refused", "bad value")]


@pytest.mark.parametrize("value", [-5, 0, 2.5, 1e9])
def test_a_bad_parallel_degree_in_a_result_file_is_one_line(bad, tmp_path, value):
    doc = json.loads((REPO / "tests" / "data" / "validate" / "vllm_metadata_rate.json").read_text())
    doc["tp"] = value
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(doc))
    bad("validate", str(path), "--jobs", "1", contains=["tp", str(value), "1 to 1024"])
    lines = (REPO / "tests" / "data" / "validate" / "sglang_qwen32b.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["server_info"]["pp_size"] = value
    path = tmp_path / "sglang.jsonl"
    path.write_text(json.dumps(rec))
    bad("validate", str(path), "--jobs", "1", contains=["pp_size", str(value), "1 to 1024"])


def test_validate_fit_never_writes_its_profile_over_a_result_file(bad, tmp_path):
    results = tmp_path / "r.json"
    shutil.copy(REPO / "tests" / "data" / "validate" / "vllm_llama8b_c16.json", results)
    before = results.read_bytes()
    bad("validate", str(results), "--gpu", "h100-sxm", "--tp", "1", "--jobs", "1", "--requests", "4", "--fit",
        "--profile-out", str(tmp_path / "." / "r.json"), contains=["--profile-out", "r.json", "result file"])
    assert results.read_bytes() == before


def test_a_model_id_that_is_not_text_is_treated_as_missing(bad, tmp_path):
    doc = json.loads((REPO / "tests" / "data" / "validate" / "vllm_metadata_rate.json").read_text())
    doc["model_id"] = -5
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(doc))
    bad("validate", str(path), "--jobs", "1", contains=["lacks model", "--model"])
