"""Run drivers: turn an experiment into a simulated result (static batches in static.py, training steps in
training.py; request-level serving in simcore.serving)."""
