"""The spread of MoE expert popularity (simcore.ops.routing), fitted by benchmarks/fit_routing.py.

Written by the fitting script; do not edit by hand.
"""

FITTED_SIGMA = 1.2
SOURCE = "benchmarks/fit_routing.py on serving_h100.json (H100 closed-loop aggregated MoE rows, every engine: 222 rows), least squares of log mean TPOT over sigma in 0-2"
