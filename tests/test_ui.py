"""The web page with Streamlit's own AppTest harness (skipped without streamlit), and `simcore ui`."""

from __future__ import annotations

import pytest

from simcore.planner.capacity import plan
from simcore.config.hardware import GIB
from simcore.ui import APP, streamlit_command

pytest.importorskip("streamlit", reason="streamlit is not installed (pip install 'simcore[ui]')")
from streamlit.testing.v1 import AppTest  # noqa: E402


@pytest.fixture
def page(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_loads_with_the_plan_of_llama_8b_on_h100(page):
    """The plan tab shows what `simcore plan --model llama-3.1-8b --gpu h100-sxm` computes."""
    d = plan("llama-3.1-8b", "h100-sxm").as_dict()
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["KV cache capacity"] == f"{d['memory_per_gpu_bytes']['kv_cache'] / GIB:,.2f} GiB"
    assert metrics["KV tokens"] == f"{d['kv_tokens']:,}"
    assert [b.proto.label for b in page.get("download_button")] == ["plan (JSON)", "memory breakdown (CSV)"]
    assert [e.value for e in page.success] == [d["verdict"]]


def test_recommend_shows_a_ranked_table_and_the_deploy_commands(page):
    page.number_input(key="nreq").set_value(40).run()
    page.button(key="recommend").click().run()
    assert not page.exception, [e.value for e in page.exception]
    tables = [t.value for t in page.table]
    ranked = tables[-1]
    assert list(ranked.columns)[:3] == ["gpu", "tp", "pp"] and len(ranked) >= 1
    assert set(ranked["gpu"]) == {"h100-sxm"}
    assert any("vllm serve meta-llama/Llama-3.1-8B" in c.value for c in page.code)


def test_serving_run_shows_percentiles(page):
    page.number_input(key="sreq").set_value(30).run()
    page.button(key="simulate").click().run()
    assert not page.exception, [e.value for e in page.exception]
    pct = page.table[-1].value
    assert list(pct.index) == ["ttft_s", "tpot_s", "itl_s", "e2e_s"] and list(pct.columns)[:2] == ["mean", "p50"]
    assert (pct.loc["ttft_s", "p99"] >= pct.loc["ttft_s", "p50"] > 0)


def test_a_hugging_face_id_that_resolves_nowhere_is_one_error_line(page):
    page.text_input(key="hf_id").input("meta-llama/Llama-3.1-8X").run()
    (err,) = [e.value for e in page.error]
    assert err.startswith("error: model: 'meta-llama/Llama-3.1-8X'") and "did you mean" in err
    assert not page.metric


def test_simcore_ui_runs_streamlit_on_the_app(bad):
    cmd = streamlit_command(9000, "0.0.0.0", headless=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP)
    assert cmd[5:] == ["--server.port", "9000", "--server.address", "0.0.0.0", "--server.headless", "true",
                       "--browser.gatherUsageStats", "false"]
    bad("ui", "--port", "0", contains=["port: 0", "1 to 65535"])
