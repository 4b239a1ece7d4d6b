"""simcore: discrete-event simulation of LLM inference with an explicit KV cache."""

__version__ = "0.1.0"
