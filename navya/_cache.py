"""A content-addressed store of results: built artifacts and their evaluations, kept between runs.

An entry is found by a key, the SHA-256 of everything its value depends on (the caller composes
it: :func:`digest` of a JSON-able dict). Nothing is ever looked up by name or date, so a changed
input is simply another key, a miss. The store lives in a folder (default ``.navya-cache/`` under
the project, ignored by git; ``NAVYA_CACHE_DIR`` or an option elsewhere); one entry is one file,
``<root>/<kind>/<key[:2]>/<key>.entry``:

- a first line ``navya-cache-entry 1``;
- one line of JSON: the key, the payload's length and SHA-256, and ``meta`` (what a person
  wants to know about the entry: when and how long it took to build, the key's parts);
- the payload: ``torch.save`` of the value (whole modules are pickled, as navya's stored builds
  are: load entries only from a folder you trust, like any pickle).

Writes are atomic (:mod:`navya._io`). A read checks the header, the length and the SHA-256 before
it unpickles anything: a truncated, corrupted or unloadable entry is a miss with a
:class:`CacheWarning` that names the file, never a crash and never a wrong value; the next write
of that key replaces it. Reads refresh the entry's modification time; when the store grows over
its size limit (``NAVYA_CACHE_MAX_MB``, default 4,000 MB) the least recently used entries go.

Also here, for the callers' keys: :func:`module_sources` (the SHA-256 of every navya module a
piece of code can run, followed through its imports), :func:`package_versions` and
:class:`FileDigests` (file contents hashed once and remembered by size and modification time,
as git's index does).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navya._io import atomic_write_bytes, atomic_write_text

__all__ = [
    "DEFAULT_DIR",
    "ENV_DIR",
    "ENV_MAX_MB",
    "CacheWarning",
    "Entry",
    "FileDigests",
    "ResultStore",
    "digest",
    "module_sources",
    "package_versions",
]

DEFAULT_DIR = ".navya-cache"
ENV_DIR = "NAVYA_CACHE_DIR"
ENV_MAX_MB = "NAVYA_CACHE_MAX_MB"
DEFAULT_MAX_MB = 4000
MAGIC = b"navya-cache-entry 1\n"


class CacheWarning(UserWarning):
    """A cache entry that could not be used (truncated, corrupted, unloadable): it is treated
    as a miss and rebuilt."""


def digest(parts: Any) -> str:
    """SHA-256 of ``parts`` as canonical JSON (sorted keys): the key of what they describe."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- what a result depends on ----------------------------------------------------------------


def _module_file(name: str) -> Path | None:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        path = None if spec is None else spec.origin
    if not path or not str(path).endswith(".py"):
        return None
    return Path(path)


def _is_package(name: str) -> bool:
    path = _module_file(name)
    return path is not None and path.name == "__init__.py"


def _imports(name: str, tree: ast.AST, package: str) -> set[str]:
    """The modules of ``package`` that module ``name`` imports anywhere (function bodies too)."""
    base = name if _is_package(name) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                stem = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{stem}.{node.module}" if node.module else stem
            else:
                mod = node.module or ""
            found = [mod] + [f"{mod}.{alias.name}" for alias in node.names]
        else:
            continue
        for mod in found:
            if mod == package or mod.startswith(package + "."):
                if _module_file(mod) is not None:
                    out.add(mod)
    return out


def module_sources(roots: Iterable[str], package: str = "navya") -> dict[str, str]:
    """``{module: sha256 of its source}`` for ``roots`` and every module of ``package`` they
    import, directly or not, at module level or inside functions, with the ``__init__`` of
    every package on the way. A root outside ``package`` (a project's conftest that registers a
    transform) counts with its own source only.

    Raises:
        ValueError: a root has no Python source file (its code cannot be fingerprinted).
    """
    out: dict[str, str] = {}
    todo = list(dict.fromkeys(roots))
    for root in todo:
        if _module_file(root) is None:
            raise ValueError(f"module {root!r} has no Python source file to fingerprint")
    while todo:
        name = todo.pop()
        if name in out:
            continue
        path = _module_file(name)
        if path is None:
            continue
        source = path.read_bytes()
        out[name] = hashlib.sha256(source).hexdigest()
        if name != package and not name.startswith(package + "."):
            continue
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend(p for p in parents if p not in out)
        todo.extend(m for m in _imports(name, ast.parse(source, str(path)), package)
                    if m not in out)
    return dict(sorted(out.items()))


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of the distributions ``names`` (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


class FileDigests:
    """SHA-256 of file contents, remembered by path, size and modification time in a JSON file
    (``memo``; None: this object only), so a data set of thousands of images is read once, not
    on every run. A changed file (size or mtime) is read again."""

    def __init__(self, memo: str | os.PathLike | None = None):
        self.memo = None if memo is None else Path(memo)
        self._known: dict[str, list] = {}
        self._dirty = False
        if self.memo is not None and self.memo.is_file():
            try:
                data = json.loads(self.memo.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    self._known = {k: v for k, v in data.items()
                                   if isinstance(v, list) and len(v) == 3}
            except (OSError, ValueError):
                warnings.warn(f"{self.memo}: unreadable file-digest memo, ignored (it is "
                              "rebuilt)", CacheWarning, stacklevel=2)

    def __call__(self, path: str | os.PathLike) -> str:
        path = Path(path).resolve()
        st = path.stat()
        known = self._known.get(str(path))
        if known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return known[2]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self._known[str(path)] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
        self._dirty = True
        return h.hexdigest()

    def save(self) -> None:
        """Write the memo (atomically) if anything was hashed since it was read."""
        if self.memo is not None and self._dirty:
            atomic_write_text(self.memo, json.dumps(self._known, sort_keys=True))
            self._dirty = False


# -- the store -------------------------------------------------------------------------------


@dataclass
class Entry:
    """A value read from the store, with the ``meta`` it was written with."""

    value: Any
    meta: dict[str, Any]
    path: Path
    load_s: float


class ResultStore:
    """Entries of ``kind`` by key under ``root`` (see the module docstring).

    Args:
        root: the cache folder (created on the first write).
        max_mb: the size the store is trimmed to after a write, least recently used entries
            first (default ``NAVYA_CACHE_MAX_MB`` or 4,000).
    """

    def __init__(self, root: str | os.PathLike, *, max_mb: float | None = None):
        self.root = Path(root)
        if max_mb is None:
            raw = os.environ.get(ENV_MAX_MB)
            try:
                max_mb = float(raw) if raw else DEFAULT_MAX_MB
            except ValueError:
                raise ValueError(f"{ENV_MAX_MB}={raw!r} is not a number of megabytes") from None
        self.max_bytes = int(max_mb * 1e6)
        self._digests: FileDigests | None = None

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    @property
    def file_digests(self) -> FileDigests:
        """The store's :class:`FileDigests` (memo ``<root>/file-digests.json``)."""
        if self._digests is None:
            self._digests = FileDigests(self.root / "file-digests.json")
        return self._digests

    def path(self, kind: str, key: str) -> Path:
        if not kind.isidentifier() or len(key) != 64 or not all(
                c in "0123456789abcdef" for c in key):
            raise ValueError(f"bad cache kind/key: {kind!r} {key!r}")
        return self.root / kind / key[:2] / f"{key}.entry"

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold the entry's lock (an exclusive ``flock`` on ``<root>/locks/<kind>-<key>.lock``)
        for the block: processes that share the store (parallel build workers, shards on one
        machine) build one entry once; a second one waits, then reads what the first wrote.
        The kernel releases the lock when its holder exits, however it exits. Where the store
        cannot be locked (no ``fcntl``, a read-only folder) the block runs unlocked."""
        self.path(kind, key)  # validates kind and key
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock
            yield
            return
        folder = self.root / "locks"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / f"{kind}-{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _miss(self, path: Path, why: str) -> None:
        warnings.warn(f"cache entry {path} is unusable ({why}): treated as a miss, it will be "
                      "rebuilt", CacheWarning, stacklevel=3)

    def meta(self, kind: str, key: str) -> dict[str, Any] | None:
        """The ``meta`` of the entry of ``key`` from its header alone (the payload is neither
        read nor checked: :meth:`get` does that), or None: absent or no valid header."""
        try:
            with open(self.path(kind, key), "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    return None
                header = json.loads(f.readline().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        meta = header.get("meta") if isinstance(header, dict) else None
        return meta if isinstance(meta, dict) and header.get("key") == key else None

    def get(self, kind: str, key: str) -> Entry | None:
        """The entry of ``key``, or None: not there, or unusable (a warning says why)."""
        import torch

        path = self.path(kind, key)
        t0 = time.perf_counter()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._miss(path, f"cannot be read: {exc}")
            return None
        if not data.startswith(MAGIC):
            self._miss(path, "not a navya cache entry (bad first line)")
            return None
        end = data.find(b"\n", len(MAGIC))
        try:
            header = json.loads(data[len(MAGIC):end].decode("utf-8")) if end > 0 else None
        except (UnicodeDecodeError, ValueError):
            header = None
        if not isinstance(header, dict) or not {"key", "payload_bytes", "payload_sha256",
                                                 "meta"} <= set(header):
            self._miss(path, "its header is missing or not valid JSON")
            return None
        payload = data[end + 1:]
        if header["key"] != key:
            self._miss(path, f"it holds key {str(header['key'])[:12]}..., not {key[:12]}...")
            return None
        if len(payload) != header["payload_bytes"]:
            self._miss(path, f"truncated: {len(payload)} of {header['payload_bytes']} bytes")
            return None
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            self._miss(path, "its content does not match the SHA-256 in its header")
            return None
        try:
            with warnings.catch_warnings():  # whole quantized modules unpickle through it
                warnings.filterwarnings("ignore", "TypedStorage is deprecated")
                warnings.filterwarnings("ignore", ".*quantized tensor creation functions")
                value = torch.load(io.BytesIO(payload), weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a class that no longer unpickles: a miss
            self._miss(path, f"it does not load: {type(exc).__name__}: {exc}")
            return None
        try:
            os.utime(path)  # recently used
        except OSError:
            pass
        return Entry(value, dict(header["meta"]), path, time.perf_counter() - t0)

    def put(self, kind: str, key: str, value: Any, meta: dict[str, Any]) -> Path:
        """Write ``value`` under ``key`` atomically (replacing an unusable entry); then trim the
        store to its size limit. Returns the entry's path."""
        import torch

        buf = io.BytesIO()
        torch.save(value, buf)
        payload = buf.getvalue()
        header = {"key": key, "kind": kind, "payload_bytes": len(payload),
                  "payload_sha256": hashlib.sha256(payload).hexdigest(), "meta": meta}
        line = json.dumps(header, sort_keys=True, default=str).encode("utf-8")
        path = self.path(kind, key)
        atomic_write_bytes(path, MAGIC + line + b"\n" + payload)
        self.trim(keep=path)
        return path

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*/??/*.entry")) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def trim(self, keep: Path | None = None) -> list[Path]:
        """Remove least recently used entries until the store fits its limit (``keep`` is
        never removed); returns the removed paths."""
        items = []
        for p in self.entries():
            try:
                st = p.stat()
            except OSError:
                continue
            items.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in items)
        removed = []
        for _, size, p in sorted(items, key=lambda t: t[0]):
            if total <= self.max_bytes:
                break
            if keep is not None and p == keep:
                continue
            try:
                p.unlink()
            except OSError:
                continue
            total -= size
            removed.append(p)
        return removed
