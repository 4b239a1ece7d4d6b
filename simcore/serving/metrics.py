"""Per-request times, percentiles, the inter-token-latency histogram and the CSV stream.

Per request only a few float arrays are kept (arrival, first token, finish); CSV rows are
queued as requests finish or are dropped and written CSV_BATCH at a time, their columns computed
with numpy (the same values, and the same text, as one row at a time). Inter-token gaps (one per output token) go into a log-binned
histogram (1000 bins per decade: percentiles within 0.12%); their mean is exact.

An engine iteration's gaps are one segment. Most segments are n copies of one gap (every running
sequence last emitted in the previous step), so the hot loop records (gap, n) and the histogram
and the running sum are brought up to date in batches (`_flush`), with numpy doing per segment
exactly what `itl()` does with the segment's array: the same bins, and the same pairwise sum
added to `itl_sum` in iteration order, so the results are bit-identical to one `itl()` call per
iteration.
"""

from __future__ import annotations

import csv
import math

import numpy as np

BINS_PER_DECADE = 1000
LOW_EXP, HIGH_EXP = -7, 4  # 0.1 us .. 10,000 s
CSV_BATCH = 4096  # CSV rows queued before they are written
FLUSH_GAPS = 1 << 20  # buffered inter-token gaps before the histogram and sum are brought up to date
CSV_FIELDS = ("request", "replica", "arrival_s", "first_token_s", "finish_s", "ttft_s", "tpot_s", "e2e_s",
              "prompt_tokens", "output_tokens", "status")


def stats(x: np.ndarray) -> dict:
    if not len(x):
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}


class Metrics:
    def __init__(self, reqs, slo, csv_path=None):
        n = len(reqs)
        self.reqs = reqs
        self.slo = slo
        self.arrival = np.full(n, np.nan)
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.replica = np.full(n, -1, dtype=np.int64)
        self.dropped: dict[str, int] = {}  # reason -> requests
        self.dropped_n = 0
        self.arrivals = 0
        self.finishes = 0
        self.preemptions = 0
        self.hist = np.zeros((HIGH_EXP - LOW_EXP) * BINS_PER_DECADE + 1, dtype=np.int64)
        self.itl_sum = 0.0
        self.itl_n = 0
        # segments not yet in hist / itl_sum: gap and count (count 0: explicit segment, value = its sum)
        self._seg_g: list[float] = []
        self._seg_n: list[int] = []
        self._xg: list[float] = []  # the gaps of explicit segments (histogram only)
        self._pending = 0  # gaps buffered
        self.series: list[tuple] | None = None  # (t, replica, batch, waiting, kv used fraction) when kept
        self.warmup = 0  # requests 0 .. warmup - 1 are benchmark warm-up: run, but left out of the statistics
        self._file = self._writer = None
        self._rows: list[int] = []  # requests whose CSV row is queued, and their statuses
        self._status: list[str] = []
        if csv_path is not None:
            self._file = open(csv_path, "w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(CSV_FIELDS)

    def _bins(self, gaps: np.ndarray) -> np.ndarray:
        idx = ((np.log10(np.maximum(gaps, 1e-7)) - LOW_EXP) * BINS_PER_DECADE).astype(np.int64)
        return np.clip(idx, 0, len(self.hist) - 1)

    def itl_run(self, gap: float, n: int) -> None:
        """One iteration's gaps: n copies of `gap` (n > 0)."""
        self._seg_g.append(gap)
        self._seg_n.append(n)
        self.itl_n += n
        self._pending += n
        if self._pending >= FLUSH_GAPS:
            self._flush()

    def itl_list(self, gaps: list) -> None:
        """One iteration's gaps, in emission order (its sum is numpy's sum of that array, as in itl())."""
        self._seg_g.append(float(np.array(gaps).sum()))
        self._seg_n.append(0)
        self._xg.extend(gaps)
        self.itl_n += len(gaps)
        self._pending += len(gaps)
        if self._pending >= FLUSH_GAPS:
            self._flush()

    def _flush(self) -> None:
        if not self._seg_g:
            return
        g = np.array(self._seg_g)
        n = np.array(self._seg_n, dtype=np.int64)
        sums = g.copy()  # explicit segments carry their sum already
        for v in np.unique(n[n > 0]).tolist():
            at = np.flatnonzero(n == v)
            # a row of a C-contiguous 2-D array is summed as that 1-D array would be (pairwise)
            sums[at] = np.repeat(g[at][:, None], v, axis=1).sum(axis=1)
        total = self.itl_sum
        for x in sums.tolist():  # in iteration order, as itl() adds them
            total += x
        self.itl_sum = total
        runs = n > 0
        if runs.any():
            np.add.at(self.hist, self._bins(g[runs]), n[runs])
        if self._xg:
            np.add.at(self.hist, self._bins(np.array(self._xg)), 1)
        self._seg_g, self._seg_n, self._xg, self._pending = [], [], [], 0

    def sample(self, rep, t: float, batch: int) -> None:
        if self.series is not None:
            self.series.append((t, rep.idx, batch, len(rep.waiting), rep.pool.used / max(1, rep.pool.capacity)))

    def arrived(self, r: int, t: float, replica: int) -> None:
        self.arrival[r] = t
        self.replica[r] = replica
        self.arrivals += 1

    def finished(self, r: int, t: float) -> None:
        self.finish[r] = t
        self.finishes += 1
        if self._writer:
            self._row(r, "finished")

    def drop(self, r: int, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.dropped_n += 1
        if self._writer:
            self._row(r, f"dropped: {reason}")

    def _row(self, r: int, status: str) -> None:
        """Queue request r's row (its times no longer change once it finished or was dropped)."""
        self._rows.append(r)
        self._status.append(status)
        if len(self._rows) >= CSV_BATCH:
            self._write_rows()

    def _write_rows(self) -> None:
        if not self._rows:
            return
        r = np.array(self._rows, dtype=np.int64)
        a, f, e = self.arrival[r], self.first_token[r], self.finish[r]
        out = self.reqs.output[r].astype(np.int64)
        multi = (out > 1) & ~np.isnan(e)
        tpot = np.full(len(r), math.nan)
        tpot[multi] = (e[multi] - f[multi]) / (out[multi] - 1)
        self._writer.writerows(zip(self._rows, self.replica[r].tolist(), a.tolist(), f.tolist(), e.tolist(),
                                   (f - a).tolist(), tpot.tolist(), (e - a).tolist(),
                                   self.reqs.prompt[r].astype(np.int64).tolist(), out.tolist(), self._status))
        self._rows, self._status = [], []

    def close(self) -> None:
        self._flush()
        if self._file:
            self._write_rows()
            self._file.close()

    def itl_stats(self) -> dict:
        self._flush()
        if not self.itl_n:
            return stats(np.zeros(0))
        cum = np.cumsum(self.hist)
        def q(p):
            i = int(np.searchsorted(cum, p / 100 * self.itl_n))
            return float(10 ** (LOW_EXP + (i + 0.5) / BINS_PER_DECADE))
        return {"mean": self.itl_sum / self.itl_n, "p50": q(50), "p90": q(90), "p99": q(99)}

    def summary(self) -> dict:
        finished = ~np.isnan(self.finish)
        done = finished.copy()
        done[: self.warmup] = False  # warm-up requests: not measured (latencies, throughput, goodput)
        out = self.reqs.output[done]
        a, f, e = self.arrival[done], self.first_token[done], self.finish[done]
        multi = out > 1
        tpot = (e[multi] - f[multi]) / (out[multi] - 1)
        if not done.any():
            span = 0.0
        elif self.warmup:  # the measured requests' own window
            span = float(e.max() - a.min())
        else:
            span = float(np.nanmax(self.finish) - np.nanmin(self.arrival))
        good = np.ones(len(a), dtype=bool)
        s = self.slo
        if s.ttft_s is not None:
            good &= (f - a) <= s.ttft_s
        if s.tpot_s is not None:
            good &= np.where(multi, (e - f) / np.maximum(out - 1, 1), 0.0) <= s.tpot_s
        if s.e2e_s is not None:
            good &= (e - a) <= s.e2e_s
        rate = (lambda k: k / span if span > 0 else 0.0)  # noqa: E731
        return {
            "ttft_s": stats(f - a), "tpot_s": stats(tpot), "itl_s": self.itl_stats(), "e2e_s": stats(e - a),
            "throughput": {"requests_per_s": rate(int(done.sum())), "output_tokens_per_s": rate(float(out.sum()))},
            "goodput_requests_per_s": rate(int(good.sum())),
            "preemptions": self.preemptions,
            "requests_completed": int(finished.sum()),
            "requests_dropped": self.dropped_n,
            "dropped_reasons": dict(self.dropped),
            "duration_s": span,
        }
