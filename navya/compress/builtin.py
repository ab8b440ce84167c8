"""Imports the modules whose import registers navya's built-in variants (in suite order)."""

from navya.compress import (
    prune,  # noqa: F401  (prune-*)
    quantize,  # noqa: F401  (int8-*, bf16, fp16)
)
