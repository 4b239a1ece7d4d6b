"""`simcore profile`: the measurement plan (from the catalog's own op lists), the collector and its
file format (through a fake backend: no torch, no GPU), and device detection."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from simcore.calibrate import data
from simcore.calibrate.collect.backend import describe
from simcore.calibrate.collect.plan import FULL, QUICK, elementwise_bytes, gemm_pairs, head_shapes, measurement_plan
from simcore.calibrate.collect.run import collect, file_name, profile_main
from simcore.cli import main
from tests.fake_gpu import COPY, FakeBackend


def test_gemm_shapes_are_the_catalog_models_weight_matrices():
    pairs = set(gemm_pairs((1, 8)))
    # llama-3.1-8b at tp 1: qkv 4096 -> (32 + 2 x 8) x 128, gate_up 4096 -> 2 x 14336, down 14336 -> 4096
    assert {(4096, 6144), (4096, 28672), (14336, 4096), (4096, 4096)} <= pairs
    # llama-3.1-70b at tp 8: qkv 8192 -> (64/8 + 2 x 8/8) x 128 = 1280; down 28672/8 -> 8192
    assert {(8192, 1280), (3584, 8192)} <= pairs
    # mixtral's routed experts (one expert's slice) and its router
    assert {(4096, 2 * 14336), (4096, 8)} <= pairs
    assert (8192, 1280) not in set(gemm_pairs((1,)))


def test_attention_shapes_are_per_gpu_heads_without_mla():
    shapes = head_shapes((1, 8))
    assert (32, 8, 128) in shapes and (8, 1, 128) in shapes  # llama-3.1-8b/70b at tp 1 / tp 8
    # deepseek-v3 (MLA, q/k 192) is left out; qwen3.5-397b-a17b's full-attention layers have head_dim 256
    assert all(hd in (64, 128, 256) for _, _, hd in shapes)


def test_the_plan_per_gpu_dtypes_and_gpu_count():
    h100 = measurement_plan({"bf16": 989, "fp8": 1979}, quick=True, gpus=8)
    a100 = measurement_plan({"bf16": 312}, quick=True, gpus=1)
    assert h100.dtypes == ("bf16", "fp8") and a100.dtypes == ("bf16",)
    assert {r["dtype"] for r in a100.gemm} == {"bf16"} and not a100.collective
    fp8 = [r for r in h100.gemm if r["dtype"] == "fp8"]
    assert fp8 and all(r["K"] % 16 == 0 and r["N"] % 16 == 0 for r in fp8)  # tensor-core fp8 needs multiples of 16
    assert {r["M"] for r in h100.gemm} == set(QUICK.gemm_m)
    assert {(r["op"], r["gpus"]) for r in h100.collective} == {(op, 8) for op in ("all_reduce", "all_gather", "all_to_all")}
    assert all(r["B"] * r["L"] * 2 * r["hkv"] * r["hd"] * 2 <= QUICK.max_kv_bytes for r in h100.decode_attn)
    full = measurement_plan({"bf16": 989, "fp8": 1979}, quick=False, gpus=8)
    for fam in full.FAMILIES:
        assert len(getattr(full, fam)) > len(getattr(h100, fam)), fam
    assert {r["M"] for r in full.gemm} == set(FULL.gemm_m)


def test_elementwise_bytes_are_reads_plus_writes():
    assert elementwise_bytes("rmsnorm", 2, 8) == 2 * (2 * 8 * 2) + 8 * 2  # x in, y out, weight
    assert elementwise_bytes("add", 2, 8) == 3 * 2 * 8 * 2
    with pytest.raises(ValueError):
        elementwise_bytes("gelu", 1, 1)


def test_the_collector_writes_the_shared_format(tmp_path, capsys):
    backend = FakeBackend("l40s", devices=2)
    assert profile_main(str(tmp_path), quick=True, backend=backend) == 0
    path = tmp_path / "fake-l40s_microbench.json"
    assert f"wrote {path}" in capsys.readouterr().out
    doc = json.loads(path.read_text())
    data.check(doc, str(path))  # what `simcore calibrate` accepts
    assert set(doc) == {"about", "meta", "device", "gemm", "decode_attn", "prefill_attn", "elementwise", "collective"}
    assert "simcore profile" in doc["about"] and "Fake l40s" in doc["about"] and "sdpa" in doc["about"]
    meta = doc["meta"]
    assert meta["gpu"] == "Fake l40s" and meta["device_count"] == 2 and meta["plan"]["dtypes"] == ["bf16", "fp8"]
    assert meta["plan"]["rows"] == sum(len(doc[f]) for f in ("gemm", "decode_attn", "prefill_attn", "elementwise",
                                                               "collective"))
    assert doc["device"]["copy_rw_GBps"] == pytest.approx(COPY * 864)
    g = doc["gemm"][0]
    assert g["tflops"] == pytest.approx(2 * g["M"] * g["K"] * g["N"] / g["ms"] / 1e9)
    assert all(r["backend"] == "sdpa" for r in doc["decode_attn"] + doc["prefill_attn"])
    assert {r["gpus"] for r in doc["collective"]} == {2}
    # every measurement of the plan reached the backend once, plus the 8192^3 GEMM of device.gemm_8192_tflops
    assert len(backend.calls) == meta["plan"]["rows"] + 1


def test_a_row_the_backend_cannot_run_is_skipped_and_listed():
    class Partial(FakeBackend):
        def gemm(self, m, k, n, dtype):
            if dtype == "fp8":
                raise RuntimeError("no fp8 kernel\nmore")
            return super().gemm(m, k, n, dtype)

    plan = measurement_plan({"bf16": 1, "fp8": 1}, quick=True, gpus=1)
    doc = collect(Partial("l40s"), plan)
    fp8 = sum(r["dtype"] == "fp8" for r in plan.gemm)
    assert len(doc["meta"]["skipped"]) == fp8 and "RuntimeError: no fp8 kernel" in doc["meta"]["skipped"][0]
    assert all(r["dtype"] == "bf16" for r in doc["gemm"])


def test_file_name_is_a_slug_of_the_device():
    assert file_name({"gpu": "NVIDIA H100 80GB HBM3"}) == "nvidia-h100-80gb-hbm3_microbench.json"
    assert file_name({}) == "gpu_microbench.json"


def fake_torch(available=True, hip=None, cuda="12.4", name="NVIDIA H100 80GB HBM3", count=8):
    props = SimpleNamespace(name=name, total_memory=85_000_000_000, multi_processor_count=132, L2_cache_size=52428800,
                            major=9, minor=0)
    cuda_mod = SimpleNamespace(is_available=lambda: available, get_device_properties=lambda i: props,
                               device_count=lambda: count)
    return SimpleNamespace(__version__="2.5.0", version=SimpleNamespace(hip=hip, cuda=None if hip else cuda),
                           cuda=cuda_mod, backends=SimpleNamespace())


def test_device_detection_nvidia_and_rocm(monkeypatch):
    monkeypatch.setattr("simcore.calibrate.collect.backend._smi", lambda amd: {"driver": "550.54"})
    nv = describe(fake_torch())
    assert nv["vendor"] == "nvidia" and nv["cuda"] == "12.4" and nv["l2_bytes"] == 52428800 and nv["sms"] == 132
    assert nv["device_count"] == 8 and nv["driver"] == "550.54" and "hip" not in nv
    amd = describe(fake_torch(hip="6.2", name="AMD Instinct MI300X"))
    assert amd["vendor"] == "amd" and amd["hip"] == "6.2" and "cuda" not in amd and amd["gpu"] == "AMD Instinct MI300X"


@pytest.mark.parametrize("hip, cuda, build", [(None, None, "CPU-only build"), (None, "12.4", "CUDA 12.4 build"),
                                              ("6.2", None, "HIP 6.2 build")])
def test_no_gpu_is_a_one_line_error(hip, cuda, build):
    from simcore.errors import SimcoreError

    with pytest.raises(SimcoreError, match=f"no GPU visible to PyTorch 2.5.0 \\({build}\\)"):
        describe(fake_torch(available=False, hip=hip, cuda=cuda))


def test_profile_without_torch_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert main(["profile", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: simcore profile needs PyTorch") and "simcore[profile]" in err
    assert err.count("\n") == 1 and not (tmp_path / "p").exists()


def test_profile_bad_flags(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert main(["profile", "--out", str(f)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["profile", "--out", str(tmp_path), "--gpus", "0"]) == 2
    assert "--gpus 0: must be >= 1" in capsys.readouterr().err
    with pytest.raises(Exception, match="--gpus 3: only 2 GPU"):
        profile_main(str(tmp_path), quick=True, gpus=3, backend=FakeBackend("l40s", devices=2))


def test_importing_simcore_never_imports_torch():
    code = ("import sys, simcore.cli, simcore.calibrate.cli, simcore.calibrate.collect.run, "
            "simcore.calibrate.collect.backend; simcore.cli.parser(); assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_collectives_that_cannot_start_are_listed_not_fatal():
    class NoNccl(FakeBackend):
        def collectives(self, rows):
            raise RuntimeError("NCCL error: unhandled system error")

    doc = collect(NoNccl("l40s", devices=2), measurement_plan({"bf16": 1}, quick=True, gpus=2))
    assert "collective" not in doc and doc["gemm"]
    assert doc["meta"]["skipped"] == ["collective (all rows): RuntimeError: NCCL error: unhandled system error"]


def test_operands_rotate_through_at_least_twice_l2():
    from simcore.calibrate.collect.backend import TorchBackend

    b = TorchBackend.__new__(TorchBackend)  # no torch: only the rotation arithmetic
    b.l2 = 50 * 2**20
    for nbytes in (2**10, 2**20, 24 * 2**20, 50 * 2**20, 2**30):
        c = b.copies(nbytes)
        assert c >= 2 and (c * nbytes >= 2 * b.l2 or c == 64)
    assert b.copies(2**30) == 2 and b.copies(2**10) == 64  # big operands: two copies; tiny ones: capped


def test_shapes_from_a_file_time_the_same_rows_in_every_dtype(tmp_path):
    ref = {"gemm": [{"M": 1, "K": 4096, "N": 6144, "ms": 0.02}, {"M": 8, "K": 4000, "N": 24, "ms": 0.01}],
           "decode_attn": [{"B": 2, "L": 128, "hq": 32, "hkv": 8, "hd": 128, "ms": 1, "backend": "sdpa"},
                           {"B": 2, "L": 128, "hq": 32, "hkv": 8, "hd": 128, "ms": 2, "backend": "flash_attn"}],
           "prefill_attn": [{"B": 1, "S": 512, "hq": 32, "hkv": 8, "hd": 128, "ms": 0.1}],
           "collective": [{"op": "all_reduce", "gpus": 8, "bytes": 1024, "ms": 0.01}]}
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(ref))
    backend = FakeBackend("l40s", devices=2)
    assert profile_main(str(tmp_path / "out"), backend=backend, shapes=str(path)) == 0
    doc = json.loads((tmp_path / "out" / "fake-l40s_microbench.json").read_text())
    # both dtypes at the file's GEMM shapes; fp8 only where K and N are multiples of 16 (4000 x 24 is not: 24 % 16)
    assert [(r["M"], r["K"], r["N"], r["dtype"]) for r in doc["gemm"]] == [
        (1, 4096, 6144, "bf16"), (8, 4000, 24, "bf16"), (1, 4096, 6144, "fp8")]
    assert [(r["B"], r["L"]) for r in doc["decode_attn"]] == [(2, 128)]  # one shape, timed once
    assert [r["S"] for r in doc["prefill_attn"]] == [512]
    assert [(r["op"], r["gpus"], r["bytes"]) for r in doc["collective"]] == [("all_reduce", 2, 1024)]  # this node's GPUs
    assert doc["meta"]["shapes_from"] == "ref.json"
    assert all(r["ms"] != 0.02 for r in doc["gemm"])  # timed here, not copied


@pytest.mark.parametrize("text, says", [
    ("{", "not JSON"), ("[]", "no rows"), ('{"gemm": []}', "no rows"),
    ('{"gemm": [{"M": 1, "K": 2}]}', "gemm[0]: missing N"),
    ('{"decode_attn": [{"B": 0, "L": 1, "hq": 1, "hkv": 1, "hd": 1}]}', "decode_attn[0]: B = 0: must be an integer >= 1"),
])
def test_a_bad_shapes_file_is_one_line(tmp_path, capsys, text, says):
    path = tmp_path / "s.json"
    path.write_text(text)
    assert main(["profile", "--out", str(tmp_path / "o"), "--shapes", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --shapes") and says in err and err.count("\n") == 1
    assert main(["profile", "--out", str(tmp_path / "o"), "--shapes", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_stored_h200_files_are_the_h100_shapes_and_the_gpus_spec():
    """benchmarks/data/h200_microbench_*.json (op_fidelity.py's held-out check) were written by `simcore profile`
    on one H200: the first at the shared H100 file's shapes (--shapes), in bf16 and fp8; both are valid input
    to `simcore calibrate`, and the catalog's h200-sxm L2 is the size that device reported."""
    from pathlib import Path

    from simcore.config.hardware import load_gpu

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "data"
    same = json.loads((root / "h200_microbench_h100_shapes.json").read_text())
    quick = json.loads((root / "h200_microbench_quick.json").read_text())
    heads = json.loads((root / "h200_microbench_attention_heads.json").read_text())
    for doc, name in ((same, "same"), (quick, "quick"), (heads, "heads")):
        data.check(doc, name)
        assert doc["meta"]["gpu"] == "NVIDIA H200" and doc["meta"]["capability"] == "9.0"
        assert load_gpu("h200-sxm").memory.l2_mib * 2**20 == doc["meta"]["l2_bytes"]
    h100 = Path(__file__).resolve().parents[2] / "shared" / "calibration" / "h100_microbench.json"
    if h100.is_file():
        ref = json.loads(h100.read_text())
        shapes = [(r["M"], r["K"], r["N"]) for r in ref["gemm"]]
        assert [(r["M"], r["K"], r["N"]) for r in same["gemm"] if r["dtype"] == "bf16"] == shapes
        assert [(r["M"], r["K"], r["N"]) for r in same["gemm"] if r["dtype"] == "fp8"] == shapes
        assert [(r["B"], r["L"]) for r in same["decode_attn"]] == [(r["B"], r["L"]) for r in ref["decode_attn"]]
