"""Pricing: the roofline for kernels and the alpha-beta model for collectives."""
