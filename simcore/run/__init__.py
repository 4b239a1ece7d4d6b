"""Run drivers: turn an experiment into a simulated result (static batches here; serving in simcore.serving)."""
