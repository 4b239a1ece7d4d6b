"""Whole layers per tier: the first layers in HBM while it has room, the next on host, the rest on
the third tier. Each layer is read from its own tier (serial across layers, as FlexGen-style
offloading streams layer by layer)."""

from simcore.memory.kv_placement import register


class LayerSpill:
    name = "layer_spill"
    description = "layers fill HBM in order, then host, then the third tier"
    parallel = False

    @staticmethod
    def place(layer_bytes: list[float], tiers) -> list[list[float]]:
        left = [t.capacity for t in tiers]
        out = []
        for b in layer_bytes:
            i = next((i for i, room in enumerate(left) if room >= b), None)
            row = [0.0] * len(tiers)
            if i is None:  # no tier holds the whole layer: split it over what is left, fastest first
                need = b
                for j, room in enumerate(left):
                    take = min(room, need)
                    row[j] = take / b if b else 0.0
                    left[j] -= take
                    need -= take
            else:
                row[i] = 1.0
                left[i] -= b
            out.append(row)
        return out


register(LayerSpill.name, LayerSpill)
