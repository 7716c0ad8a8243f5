"""Model and dataset files kept on the worker's disk, by sha256, within a size limit.

A file is fetched once and reused by every later job that names the same digest. When the cache
grows past its limit, the least recently used files go first; files a running job uses stay.
Cached files are read-only, and a file whose inode change time moved since this process verified
it (an evaluation wrote to it, or the worker restarted) is hashed again before it is used: a
changed file is downloaded afresh, so a job never reads bytes other than the digest names.
"""

import logging
import os
import stat
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from worker.evaluation import file_sha256
from worker.node_client import NodeClient

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024**3
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def _identity(path: Path) -> tuple[int, int, int]:
    """What changes when anyone writes to, replaces or re-stamps the file. Nobody can set the
    change time (ctime) back, not even the file's owner."""
    found = path.stat()
    return (found.st_ino, found.st_size, found.st_ctime_ns)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "research-exchange-worker" / "files"


class FileCache:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # Absolute, without links: the job's files link here, and the sandbox covers this path.
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._digest_locks: dict[str, threading.Lock] = {}
        self._pins: Counter[str] = Counter()
        # Files this process downloaded or hashed, as they were then.
        self._verified: dict[str, tuple[int, int, int]] = {}

    def path_for(self, sha256: str) -> Path:
        digest = sha256.lower()
        if len(digest) != 64 or not all(char in "0123456789abcdef" for char in digest):
            raise ValueError(f"Not a sha256 digest: {sha256!r}.")
        return self.root / digest[:2] / digest

    def fetch(self, client: NodeClient, *, url: str, sha256: str, size: int | None) -> Path:
        """The cached file with this digest, downloaded (and verified) when missing. The file
        is pinned: eviction leaves it alone until `release`."""
        path = self.path_for(sha256)
        with self._lock:
            self._pins[path.name] += 1
            digest_lock = self._digest_locks.setdefault(path.name, threading.Lock())
        try:
            with digest_lock:
                if self._intact(path, size):
                    os.utime(path)  # most recently used
                    self._verified[path.name] = _identity(path)
                    return path
                path.unlink(missing_ok=True)
                client.download(url, path, sha256, size)
                path.chmod(READ_ONLY)
                self._verified[path.name] = _identity(path)
        except BaseException:
            self.release([sha256])
            raise
        self.evict()
        return path

    def _intact(self, path: Path, size: int | None) -> bool:
        if not path.is_file() or (size is not None and path.stat().st_size != size):
            return False
        if self._verified.get(path.name) == _identity(path):
            return True
        if file_sha256(path) == path.name:
            return True
        logger.warning("cache: %s no longer matches its digest: downloading it again", path.name)
        return False

    def release(self, digests: Iterable[str]) -> None:
        with self._lock:
            for digest in digests:
                name = digest.lower()
                self._pins[name] -= 1
                if self._pins[name] <= 0:
                    del self._pins[name]

    def size(self) -> int:
        return sum(path.stat().st_size for path in self._files())

    def _files(self) -> list[Path]:
        return [path for path in self.root.glob("??/*") if not path.name.startswith(".")]

    def evict(self) -> list[str]:
        """Removes the least recently used unpinned files until the cache fits its limit.
        Returns the digests removed."""
        removed = []
        with self._lock:
            entries = []
            for path in self._files():
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                entries.append((stat.st_mtime, stat.st_size, path))
            total = sum(size for _mtime, size, _path in entries)
            for _mtime, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                if self._pins[path.name] > 0:
                    continue
                path.unlink(missing_ok=True)
                total -= size
                removed.append(path.name)
        if removed:
            logger.info("cache: evicted %d file(s) to stay within %d bytes", len(removed), total)
        return removed
