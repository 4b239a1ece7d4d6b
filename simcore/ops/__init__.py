"""Operator lists: what each rank computes and moves, with FLOPs and bytes."""
