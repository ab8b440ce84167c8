"""Compression transforms, each chosen by the type of its frozen config.

See :mod:`navya.compress.base`; the named variants built on them are registered in
:mod:`navya.catalogue`.
"""
