"""The planner's web page (Streamlit): `simcore ui` runs `streamlit run` on this file.

Three views over the same functions the CLI calls: a plan (simcore.planner.capacity.plan, the
plot of `plan --plot`), a recommendation (simcore.planner.serving_search.recommend_serving, the
tables and Pareto plot of `recommend --rate`), and one serving run (serve_deployment: latency
percentiles and time series). Every figure has a download of its data. Errors show as the CLI's
one line, never a traceback.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from simcore.config.hardware import gpu_names
from simcore.config.model import model_names
from simcore.errors import SimcoreError
from simcore.config.hardware import GIB

st.set_page_config(page_title="simcore planner", layout="wide")


def _png(draw) -> bytes:
    """Draw a figure with one of the planner's plot functions (which write files) and return its bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return path.read_bytes()


def _csv(rows) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def _guard(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except SimcoreError as exc:
        st.error(f"error: {exc}")
        return None


# -- sidebar: the deployment -------------------------------------------------------------------

st.sidebar.title("simcore planner")
catalog = model_names()
picked = st.sidebar.selectbox("model (catalog)", catalog, index=catalog.index("llama-3.1-8b"), key="model")
hf_id = st.sidebar.text_input("or a Hugging Face id", "", key="hf_id", placeholder="meta-llama/Llama-3.1-70B")
model = hf_id.strip() or picked
gpus = gpu_names()
gpu = st.sidebar.selectbox("GPU", gpus, index=gpus.index("h100-sxm"), key="gpu")
tp = st.sidebar.selectbox("tp", [1, 2, 4, 8], key="tp")
pp = st.sidebar.selectbox("pp", [1, 2, 4, 8], key="pp")
kv_dtype = st.sidebar.selectbox("KV cache dtype", ["auto", "bf16", "fp16", "fp8"], key="kv_dtype")
util = st.sidebar.slider("GPU memory utilization", 0.5, 1.0, 0.9, 0.01, key="util")

plan_tab, rec_tab, serve_tab = st.tabs(["Plan", "Recommend", "Serving run"])

# -- plan --------------------------------------------------------------------------------------

with plan_tab:
    from simcore.planner.capacity import plan
    from simcore.planner.plots import plan_figure

    max_len = st.number_input("max model length (0: the model's maximum)", 0, 10_000_000, 0, key="max_len")
    cp = _guard(plan, model, gpu, tp=tp, pp=pp, max_model_len=max_len or None, gpu_mem_util=util, kv_dtype=kv_dtype)
    if cp is not None:
        d = cp.as_dict()
        m = d["memory_per_gpu_bytes"]
        st.subheader(f"{d['model']} on {d['gpus']}x {d['gpu']} (tp {d['tp']}, pp {d['pp']})")
        a, b, c, e = st.columns(4)
        a.metric("KV cache capacity", f"{m['kv_cache'] / GIB:,.2f} GiB")
        b.metric("KV tokens", f"{d['kv_tokens']:,}")
        c.metric(f"concurrent requests at {d['max_model_len']:,} tokens", f"{d['max_concurrent_requests']:,}")
        e.metric("longest context that fits", f"{d['max_model_len_that_fits']:,}")
        (st.success if d["fits"] else st.error)(d["verdict"])
        parts = [{"part": k, "GiB": v / GIB, "bytes": v} for k, v in m.items()]
        st.table(pd.DataFrame(parts).set_index("part")[["GiB"]])
        st.image(_png(lambda p: plan_figure(cp, p)), caption="memory breakdown and KV cache per request vs context")
        x, y = st.columns(2)
        x.download_button("plan (JSON)", json.dumps(d, indent=2), "plan.json", "application/json", key="dl_plan")
        y.download_button("memory breakdown (CSV)", _csv(parts), "memory.csv", "text/csv", key="dl_mem")

# -- recommend ---------------------------------------------------------------------------------

with rec_tab:
    from simcore.planner.plots import pareto_figure
    from simcore.planner.serving_search import recommend_serving

    c1, c2, c3, c4 = st.columns(4)
    rate = c1.number_input("rate (requests/s)", 0.01, 10_000.0, 4.0, key="rate")
    isl = c2.number_input("input tokens", 1, 1_000_000, 1024, key="isl")
    osl = c3.number_input("output tokens", 1, 1_000_000, 128, key="osl")
    max_gpus = c4.number_input("max GPUs", 1, 1024, 8, key="max_gpus")
    c5, c6, c7 = st.columns(3)
    ttft = c5.text_input("TTFT SLO", "p90:1", key="ttft_slo")
    tpot = c6.text_input("TPOT SLO", "p99:0.05", key="tpot_slo")
    nreq = c7.number_input("requests per serving run", 10, 100_000, 100, key="nreq")
    pick = st.multiselect("GPUs to search", gpus, default=[gpu], key="rec_gpus")
    if st.button("Recommend", key="recommend"):
        with st.spinner("searching: rules, static estimate, then serving simulation"):
            st.session_state["rec"] = _guard(
                recommend_serving, model, rate=rate, input_len=int(isl), output_len=int(osl), ttft_slo=ttft or None,
                tpot_slo=tpot or None, max_gpus=int(max_gpus), gpus=pick or None, kv_dtypes=(kv_dtype,),
                gpu_mem_util=util, requests=int(nreq), workers=1)  # no fork from Streamlit's threaded server
    rec = st.session_state.get("rec")
    if rec is not None:
        from simcore.planner.serving_search import summary_line

        doc = rec.as_dict()
        st.caption(summary_line(rec))
        cols = ["gpu", "tp", "pp", "ep", "kv_cache_dtype", "replicas", "gpus", "ttft_s", "tpot_s",
                "output_tokens_per_s_per_gpu", "cost_per_hour_usd", "cost_per_million_output_tokens_usd"]
        ranked = pd.DataFrame([{k: r[k] for k in ["rank"] + cols} for r in doc["recommendations"]])
        st.subheader("recommendations")
        if len(ranked):
            st.table(ranked.set_index("rank").head(10))
        else:
            st.warning("no deployment meets the SLOs")
        if doc["deploy"]:
            st.code("\n".join(doc["deploy"]["commands"].values()), language="bash")
        st.subheader("why candidates were rejected")
        rej = pd.DataFrame([{k: r[k] for k in ("gpu", "tp", "pp", "ep", "stage", "check", "reason")}
                            for r in doc["rejected"]])
        st.dataframe(rej, hide_index=True)
        if rec.pareto:
            st.image(_png(lambda p: pareto_figure(rec.pareto, p, xlabel=rec.request["pareto_latency"])),
                     caption="Pareto front: throughput per GPU vs latency")
        x, y, z = st.columns(3)
        x.download_button("recommendation (JSON)", json.dumps(doc, indent=2), "recommend.json", "application/json",
                          key="dl_rec")
        y.download_button("ranked table (CSV)", ranked.to_csv(index=False).encode(), "recommend.csv", "text/csv",
                          key="dl_rank")
        z.download_button("Pareto front (CSV)", _csv(rec.pareto), "pareto.csv", "text/csv", key="dl_pareto")

# -- one serving run ---------------------------------------------------------------------------

with serve_tab:
    from simcore.planner.serving_search import serve_deployment

    s1, s2, s3, s4 = st.columns(4)
    srate = s1.number_input("rate (requests/s)", 0.01, 10_000.0, 4.0, key="srate")
    sisl = s2.number_input("input tokens", 1, 1_000_000, 1024, key="sisl")
    sosl = s3.number_input("output tokens", 1, 1_000_000, 128, key="sosl")
    sreq = s4.number_input("requests", 10, 100_000, 200, key="sreq")
    if st.button("Simulate", key="simulate"):
        with st.spinner("simulating"):
            st.session_state["serve"] = _guard(serve_deployment, model, gpu, tp=tp, pp=pp, rate=srate,
                                               input_len=int(sisl), output_len=int(sosl), requests=int(sreq),
                                               kv_dtype=kv_dtype, gpu_mem_util=util)
    res = st.session_state.get("serve")
    if res is not None:
        s = res.summary
        pct = pd.DataFrame({k: s[k] for k in ("ttft_s", "tpot_s", "itl_s", "e2e_s")}).T
        st.subheader("latency percentiles (seconds)")
        st.table(pct)
        series = pd.DataFrame(res.metrics.series or [], columns=["t_s", "replica", "batch", "waiting", "kv_used"])
        if len(series):
            st.subheader("time series")
            st.line_chart(series.set_index("t_s")[["batch", "waiting"]])
            st.line_chart(series.set_index("t_s")[["kv_used"]])
        x, y = st.columns(2)
        x.download_button("summary (JSON)", json.dumps(s, indent=2, default=float), "serving.json",
                          "application/json", key="dl_serve")
        y.download_button("time series (CSV)", series.to_csv(index=False).encode(), "series.csv", "text/csv",
                          key="dl_series")
