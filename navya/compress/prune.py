"""Pruning transforms (placeholder until the pruning issue lands)."""
