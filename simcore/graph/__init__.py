"""The pipeline graph of a job and the flattener that turns it into per-rank event streams."""
