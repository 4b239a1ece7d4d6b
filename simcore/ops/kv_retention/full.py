"""Keep every token (the default; what every engine does without a retention policy)."""

from simcore.ops.kv_retention import register


class Full:
    name = "full"
    description = "every token stays in the cache and is read by every decode step"

    @staticmethod
    def retained(cfg) -> int | None:
        return None

    @staticmethod
    def bookkeeping(builder, layer, batch) -> list:
        return []


register(Full.name, Full)
