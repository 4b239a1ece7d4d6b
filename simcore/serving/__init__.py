"""Request-level serving simulation (docs/serving.md).

Kept import-free: simcore.config.experiment imports simcore.serving.schema.
"""
