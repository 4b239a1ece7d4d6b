"""Capacity planning: memory per GPU, KV cache capacity, GPU recommendations."""
