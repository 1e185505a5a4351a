"""SHA-256 checks of model files, hashed once per (path, mtime, size).

A missing file or a checksum mismatch is raised at start (when a backend is
built), never at the first frame.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

# Read in 1 MiB pieces: large enough to be fast, small enough to bound memory.
_READ_CHUNK_BYTES = 1 << 20

_cache: dict[tuple[str, int, int], str] = {}
_cache_lock = threading.Lock()
# Bounded: one entry per distinct model file version seen by this process.
_CACHE_MAX_ENTRIES = 64


class ModelFileError(RuntimeError):
    """A model file is missing, unreadable or not the file its checksum names."""


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA-256 of ``path``, cached by (resolved path, mtime_ns, size)."""
    resolved = path.resolve()
    st = resolved.stat()
    key = (str(resolved), st.st_mtime_ns, st.st_size)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with resolved.open("rb") as fh:
        while chunk := fh.read(_READ_CHUNK_BYTES):
            digest.update(chunk)
    value = digest.hexdigest()
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX_ENTRIES:
            _cache.pop(next(iter(_cache)))
        _cache[key] = value
    return value


def verify_model_file(path: Path, expected_sha256: str, *, what: str = "model") -> Path:
    """Check that ``path`` exists and hashes to ``expected_sha256``; return the resolved path.

    Raises:
        ModelFileError: the file is missing, is not a regular file, or its
            SHA-256 differs (the message names both hashes and the path).
    """
    if not path.exists():
        raise ModelFileError(
            f"{what} file not found: {path} (set the path in the config, or CROSSCAM_SHARED "
            f"to the folder holding models/)"
        )
    if not path.is_file():
        raise ModelFileError(f"{what} path is not a file: {path}")
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
        raise ModelFileError(
            f"{what} checksum mismatch for {path}: expected sha256 {expected_sha256.lower()}, "
            f"file has {actual} (wrong or corrupted file; fix the path or the configured sha256)"
        )
    return path.resolve()


def resolve_model_path(configured: Path | None, filename: str, models_dir: Path | None) -> Path:
    """The configured path, or ``filename`` in the models folder.

    Raises:
        ModelFileError: neither a path nor a models folder is configured.
    """
    if configured is not None:
        return configured
    if models_dir is None:
        raise ModelFileError(f"no path configured for model {filename} and no models folder")
    return models_dir / filename
