"""`simcore validate`: measured serving benchmarks (vLLM, SGLang, aiconfigurator rows) against the
serving simulator, and the fit of an engine's host-overhead constants to them (docs/validation.md)."""
