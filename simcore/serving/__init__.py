"""Request-level serving simulation (docs/serving.md); its experiment schema is simcore.config.serving."""
