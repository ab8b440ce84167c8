"""Compression transforms and the registry of named variants."""
