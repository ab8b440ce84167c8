"""navya: a pytest-native performance-regression suite for compressed object detectors."""

__version__ = "0.1.0"
