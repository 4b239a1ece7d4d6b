"""Fit the benchmark client's re-issue delay (silicon.AIPERF_CLIENT) and the server's frontend loop
(silicon.DYNAMO_TOKEN_US) on the measured rows.

Usage: python benchmarks/fit_reissue.py [--rows FILE] [--only TEXT] [--jobs J] [--rounds R]
       [--delays 0,0.01,0.02,0.04,0.06] [--dist exponential|lognormal|fixed] [--cv 2,3,4]
       [--client aiperf|inferencex] [--seeds N] [--frontend-us 0,100,110]

Runs every row as benchmarks/serving_silicon.py does (same experiments and disk cache) once per candidate
mean delay (a closed-loop client's next request reaches the engine that long after its previous request's
last token; 0: at once) and prints, per candidate, the median |error| of mean TTFT and mean TPOT over the
simulated rows, then the candidate with the smallest TTFT median |error|. silicon.AIPERF_CLIENT holds the
result; docs/validation-log.md ("Round 5") gives the per-group table. `--client` keeps only the rows measured
with that benchmark's client (the row builder picks it from the row's source: silicon.AIPERF_CLIENT or
silicon.INFERENCEX_CLIENT, docs/validation-log.md "Round 7"), so each client's delay is fitted on its own rows.
`--dist lognormal --cv LIST` scans the spread of the delays too (workload.arrival.reissue_delay_cv: std / mean), every
pair of mean and cv.
`--frontend-us` scans the frontend loop's time per streamed token (serving.frontend_token_us; docs/serving.md "The
frontend loop") too, on the aggregated rows only: every pair of candidates is run, the rows' own value
(silicon.DYNAMO_TOKEN_US on aiperf rows) replaced by each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serving_silicon import DiskCache, add_row_args, add_seeds_arg, checked_seeds, fail, selected_records  # noqa: E402
from simcore.validate.cli import progress_bar  # noqa: E402
from simcore.serving.silicon import AIPERF_CLIENT, INFERENCEX_CLIENT  # noqa: E402
from simcore.validate.compare import experiments, run_seeds, summarize  # noqa: E402

CLIENTS = {"aiperf": AIPERF_CLIENT, "inferencex": INFERENCEX_CLIENT}


def overrides(delay: float, dist: str, token_us: float | None = None, cv: float | None = None) -> tuple[str, ...]:
    """--set overrides for one candidate (a zero delay is the fixed client with no delay; token_us None: the rows'
    own frontend loop; cv: the lognormal delays' std / mean, null for the other distributions)."""
    dist = dist if delay > 0 else "fixed"
    out = (f"workload.arrival.reissue_delay_s={delay}", f"workload.arrival.reissue_delay_dist={dist}",
           f"workload.arrival.reissue_delay_cv={cv if dist == 'lognormal' else 'null'}")
    return out if token_us is None else out + (f"serving.frontend_token_us={token_us}",)


def numbers(flag: str, text: str, top: float, unit: str, low: float = 0.0) -> list[float]:
    """A comma-separated list of numbers from `low` to `top`, or one error line (exit 2)."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(not low <= v <= top for v in values):
        fail(f"{flag}: {text!r}: allowed: {unit} from {low:g} to {top:g}, comma separated")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_row_args(ap, jobs=2)
    ap.add_argument("--delays", default="0,0.01,0.02,0.04,0.06", help="candidate mean delays in seconds")
    ap.add_argument("--dist", default="exponential", choices=("exponential", "lognormal", "fixed"),
                    help="delay distribution")
    ap.add_argument("--cv", help="candidate std / mean of lognormal delays (needs --dist lognormal)")
    ap.add_argument("--client", choices=sorted(CLIENTS), help="only the rows measured with this benchmark client")
    ap.add_argument("--frontend-us", help="candidate frontend-loop times per streamed token in us (default: the rows')")
    add_seeds_arg(ap)
    a = ap.parse_args()
    delays = numbers("--delays", a.delays, 10, "seconds")
    fronts = [None] if a.frontend_us is None else numbers("--frontend-us", a.frontend_us, 1e5, "microseconds")
    if (a.cv is None) == (a.dist == "lognormal"):
        fail("--cv: needed with --dist lognormal, and used by it only" if a.cv is None else
             f"--cv: {a.cv!r}: used by --dist lognormal only (here {a.dist})")
    cvs = [None] if a.cv is None else numbers("--cv", a.cv, 100, "ratios", low=0.01)
    checked_seeds(a.seeds)
    records = selected_records(a)
    if a.client:
        records = [r for r in records if r.client == CLIENTS[a.client]]
        if not records:
            fail(f"--client: {a.client}: no selected row was measured with it (a row's silicon_data_source says)")
    if fronts != [None]:  # the loop is modelled for aggregated serving only (docs/serving.md "The frontend loop")
        records = [r for r in records if r.mode == "agg"]
        if not records:
            fail("--frontend-us: no aggregated row selected (the frontend loop is modelled for aggregated serving only)")
    results = []
    for d in delays:
        for v in cvs:
            for f in fronts:
                outcomes = experiments(records, rounds=a.rounds)
                label = _label(d, a.dist, v, f)
                with progress_bar(label) as update:
                    run_seeds(outcomes, a.seeds, a.jobs, overrides=overrides(d, a.dist, f, v), progress=update,
                              cache=DiskCache(True))
                m = {x["metric"]: x for x in summarize(outcomes)["metrics"] if x["stat"] == "mean"}
                results.append(((d, a.dist, v, f), m["ttft"], m["tpot"]))
                print(f"{label}: TTFT median |error| {100 * m['ttft']['median_abs_error']:.1f}% (signed "
                      f"{100 * m['ttft']['median_error']:+.1f}%), TPOT {100 * m['tpot']['median_abs_error']:.1f}% "
                      f"({m['ttft']['n']} records)", flush=True)
    best = min(results, key=lambda r: r[1]["median_abs_error"])
    print(f"best: {_label(*best[0], aligned=False)}")


def _label(delay: float, dist: str, cv: float | None, token_us: float | None, aligned: bool = True) -> str:
    """One candidate in words: 'mean delay  40.0 ms (lognormal, cv 3), frontend 100 us/token' (aligned: the
    per-candidate lines; else '40 ms')."""
    kind = "none" if delay <= 0 else (f"{dist}, cv {cv:g}" if dist == "lognormal" else dist)
    loop = "" if token_us is None else f", frontend {token_us:g} us/token"
    ms = f"{1e3 * delay:5.1f}" if aligned else f"{1e3 * delay:g}"
    return f"mean delay {ms} ms ({kind}){loop}"


if __name__ == "__main__":
    main()
