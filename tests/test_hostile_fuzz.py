"""Hypothesis-driven attacks on every input surface through the real CLI entry (simcore.cli.main).

Each example runs in a forked child bounded to 60 s (a hang, not a speed test) and 2 GiB more
memory (tests/fuzz_surfaces.py), and must end as exit 0 with finite, physically sane output, or
exit 2 with exactly one 'error:' line.
Examples per surface stay few so the suite stays fast; benchmarks/fuzz.py runs the long campaign.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_surfaces import SURFACES, run_bounded

EXAMPLES = 4  # x 16 surfaces: about 20 s on 2 cores


@pytest.mark.parametrize("surface", list(SURFACES))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(rng=st.randoms(use_true_random=False))
def test_every_surface_keeps_the_bad_input_contract(surface, rng):
    case = SURFACES[surface](rng)
    with tempfile.TemporaryDirectory() as folder:
        outcome, detail = run_bounded(case, Path(folder), timeout_s=60)
    assert outcome in ("ok", "clean error", "long simulation"), f"{outcome}: {detail}\nargv: {case.argv}\nfiles: " + \
        "; ".join(f"{n}: {v[:400]!r}" for n, v in case.files.items())
