"""Property tests (hypothesis) over random serving workloads: the invariants hold for any of them."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_serving import run_checked, serving_run

arrivals = st.one_of(
    st.builds(lambda r: {"process": "poisson", "rate": r}, st.floats(1.0, 200.0)),
    st.builds(lambda r, cv: {"process": "gamma", "rate": r, "cv": cv}, st.floats(1.0, 200.0), st.floats(0.2, 4.0)),
    st.builds(lambda c: {"process": "closed", "concurrency": c}, st.integers(1, 24)),
)
lengths = st.one_of(
    st.builds(lambda v: {"dist": "fixed", "value": v}, st.integers(1, 3000)),
    st.builds(lambda lo, span: {"dist": "uniform", "low": lo, "high": lo + span}, st.integers(1, 1500),
              st.integers(0, 1500)),
    st.builds(lambda m, cv: {"dist": "lognormal", "mean": m, "cv": cv, "max": 4000}, st.integers(8, 1500),
              st.floats(0.1, 2.0)),
)
servings = st.fixed_dictionaries({
    "scheduler": st.sampled_from(["vllm", "sarathi", "prefill_first", "static"]),
    "prefix_caching": st.booleans(),
    "max_num_batched_tokens": st.sampled_from([512, 2048, 8192]),
    "max_num_seqs": st.sampled_from([4, 32, 256]),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrival=arrivals, prompt=lengths, output=lengths, serving=servings, seed=st.integers(0, 2**16),
       shared=st.sampled_from([{}, {"shared_prefix": {"tokens": 256, "fraction": 0.5}}]),
       memory=st.sampled_from([0.25, 0.9]))
def test_invariants_hold_for_any_workload(arrival, prompt, output, serving, seed, shared, memory):
    wl = {"requests": 30, "seed": seed, "arrival": arrival, "prompt_tokens": prompt, "output_tokens": output, **shared}
    run_checked(serving_run(wl, serving, engine={"gpu_memory_utilization": memory}))
