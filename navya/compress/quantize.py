"""Quantization transforms (placeholder until the quantization issue lands)."""
