"""Loading and validation of models, hardware and experiments."""
