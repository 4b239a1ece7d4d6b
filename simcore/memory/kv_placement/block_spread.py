"""Every layer's blocks spread over all tiers in proportion to their bandwidths (capped by each
tier's capacity, the rest poured into the tiers with room left), and read from all tiers at once:
a fetch then takes max over tiers of (share x bytes / bandwidth), the tiers' bandwidths adding up."""

from simcore.memory.kv_placement import register


class BlockSpread:
    name = "block_spread"
    description = "each layer's blocks over all tiers by bandwidth share, read in parallel"
    parallel = True

    @staticmethod
    def place(layer_bytes: list[float], tiers) -> list[list[float]]:
        total = sum(layer_bytes)
        n = len(tiers)
        share = [0.0] * n
        open_ = set(range(n))
        left = 1.0
        while open_ and left > 1e-15:  # water-filling: bandwidth-proportional, capped by capacity
            bw = sum(tiers[i].bandwidth for i in open_)
            capped = False
            for i in sorted(open_):
                want = left * tiers[i].bandwidth / bw
                cap = tiers[i].capacity / total - share[i] if total else want
                if want >= cap:
                    share[i] += cap
                    open_.discard(i)
                    capped = True
            if capped:
                left = 1.0 - sum(share)
                continue
            for i in open_:
                share[i] += left * tiers[i].bandwidth / bw
            left = 0.0
        return [list(share) for _ in layer_bytes]


register(BlockSpread.name, BlockSpread)
