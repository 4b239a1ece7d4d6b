"""Run drivers: turn an experiment into a simulated result (training here; static and serving live in
simcore/engine/static.py and simcore/serving/ until they move)."""
