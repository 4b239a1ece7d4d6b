"""vLLM's MoE prompt-step constant (issue 11; docs/serving.md "The MoE prompt-step constant"): a fitted time per MoE
layer added once to every step that carries prompt tokens (shared by its prompts, waited for by its decodes), never
to a decode-only step, never for a dense layer. Hand-computed step times on a three-layer model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simcore.config.model import load_model
from simcore.errors import SimcoreError
from simcore.serving.cost import IterationCost
from simcore.serving.engines import get_profile, resolve as resolve_engine
from tests.test_hostile import serving
from tests.test_serving import serving_run
from tests.test_serving_engines import ONE

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_moe(tmp_path) -> str:
    """Qwen3-30B-A3B cut to 3 layers, layer 0 dense (mlp_only_layers): 2 MoE layers + 1 dense layer."""
    raw = json.loads((REPO / "models" / "qwen3-30b-a3b.json").read_text())
    raw.update(num_hidden_layers=3, mlp_only_layers=[0], max_window_layers=3)
    folder = tmp_path / "tiny-moe"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(raw))
    assert load_model(str(folder / "config.json")).moe_layers == (False, True, True)
    return str(folder / "config.json")


def _cost(model: str, serving_cfg: dict, monkeypatch, **extra) -> IterationCost:
    """The step pricer of an engine profile with its host terms zeroed (const, per request, per token), so a step's
    time is its GPU time plus the MoE prompt-step constant; extra: other experiment sections (e.g. engine)."""
    from simcore.serving.engines import host_fit

    engine = serving_cfg["engine"]
    monkeypatch.setitem(host_fit.HOST, engine, {**host_fit.HOST[engine], "const_us": 0.0, "per_request_us": 0.0,
                                                "per_token_us": 0.0})
    run = serving_run(ONE, serving_cfg, model=model, **extra)
    run, _, prof = resolve_engine(run, run.experiment.serving)
    return IterationCost(run, prof)


def test_two_moe_layers_add_twice_the_constant_once_to_a_prompt_step(tiny_moe, monkeypatch):
    cost = _cost(tiny_moe, {"engine": "vllm", "moe_prompt_layer_us": 250.0}, monkeypatch)
    assert cost.moe_prompt == pytest.approx(2 * 250e-6, rel=1e-12)  # the dense layer 0 does not count
    for dec, pre, tokens in ((0, 1, 16), (0, 3, 600), (4, 1, 16), (4, 2, 300)):  # once per step, whatever its prompts
        gpu = cost.gpu_time(dec, 100.0, pre, tokens, 0.0)
        assert cost.time(dec, 100.0, pre, tokens, 0.0) == pytest.approx(gpu + 500e-6, rel=1e-12)
    # a decode-only step carries no prompt: nothing added
    assert cost.time(4, 100.0, 0, 0, 0.0) == pytest.approx(cost.gpu_time(4, 100.0, 0, 0, 0.0), rel=1e-12)
    without = _cost(tiny_moe, {"engine": "vllm", "moe_prompt_layer_us": 0.0}, monkeypatch)
    assert without.moe_prompt == 0.0
    assert without.time(0, 0.0, 1, 16, 0.0) == pytest.approx(cost.time(0, 0.0, 1, 16, 0.0) - 500e-6, rel=1e-12)


def test_the_stored_constant_is_vllms_only_and_counts_moe_layers(tiny_moe, monkeypatch):
    from simcore.serving.engines.host_fit import HOST

    x = HOST["vllm"]["moe_prompt_layer_us"] * 1e-6
    assert get_profile("vllm").moe_prompt_layer_s == x > 0 and get_profile("vllm", "0.12.0").moe_prompt_layer_s == x
    assert get_profile("sglang").moe_prompt_layer_s == 0.0 and get_profile("trtllm").moe_prompt_layer_s == 0.0
    assert _cost(tiny_moe, {"engine": "vllm"}, monkeypatch).moe_prompt == pytest.approx(2 * x, rel=1e-12)
    # gpt-oss-120b: 36 layers, every one MoE; DeepSeek-V3: 61 layers, the first 3 dense; Llama: none
    for model, moe in (("gpt-oss-120b", 36), ("deepseek-v3", 58), ("llama-3.1-8b", 0)):
        assert sum(load_model(model).moe_layers) == moe
    assert _cost("llama-3.1-8b", {"engine": "vllm"}, monkeypatch).moe_prompt == 0.0
    assert _cost(tiny_moe, {"engine": "sglang"}, monkeypatch).moe_prompt == 0.0


def test_the_override_sets_any_engines_constant(tiny_moe, monkeypatch):
    cost = _cost(tiny_moe, {"engine": "sglang", "moe_prompt_layer_us": 100.0}, monkeypatch)
    assert cost.moe_prompt == pytest.approx(200e-6, rel=1e-12)
    assert cost.time(0, 0.0, 1, 16, 0.0) == pytest.approx(cost.gpu_time(0, 0.0, 1, 16, 0.0) + 200e-6, rel=1e-12)


def test_the_constant_adds_before_the_eager_floor(tiny_moe, monkeypatch):
    """A TensorRT-LLM prompt step with both: max(GPU time + the constant, layers x the eager floor)."""
    cost = _cost(tiny_moe, {"engine": "trtllm", "moe_prompt_layer_us": 1000.0, "eager_layer_us": 100.0}, monkeypatch)
    gpu = cost.gpu_time(0, 0.0, 1, 16, 0.0)
    assert cost.eager_floor == pytest.approx(3 * 100e-6) and cost.eager_floor < gpu + 2e-3
    assert cost.time(0, 0.0, 1, 16, 0.0) == pytest.approx(gpu + 2e-3, rel=1e-12)
    cost = _cost(tiny_moe, {"engine": "trtllm", "moe_prompt_layer_us": 1000.0, "eager_layer_us": 5000.0}, monkeypatch)
    assert gpu + 2e-3 < 15e-3 and cost.time(0, 0.0, 1, 16, 0.0) == pytest.approx(15e-3, rel=1e-12)  # the floor


def test_bad_constant_is_one_line(tiny_moe):
    with pytest.raises(SimcoreError, match=r"serving.moe_prompt_layer_us: 100.0: needs serving.engine") as e:
        run = serving_run(ONE, {"moe_prompt_layer_us": 100.0}, model=tiny_moe)
        resolve_engine(run, run.experiment.serving)
    assert "\n" not in str(e.value)
    for bad in (-1, 1e6, "x"):
        with pytest.raises(SimcoreError, match="moe_prompt_layer_us"):
            serving_run(ONE, {"engine": "vllm", "moe_prompt_layer_us": bad}, model=tiny_moe)


def test_bad_constant_through_the_cli(bad, write_experiment):
    path = serving(write_experiment)
    bad("run", path, "--set", "serving.engine=vllm", "--set", "serving.moe_prompt_layer_us=-5",
        contains=["serving.moe_prompt_layer_us", "greater than or equal to 0"])
    bad("run", path, "--set", "serving.moe_prompt_layer_us=300", contains=["serving.moe_prompt_layer_us: 300",
                                                                            "needs serving.engine"])
