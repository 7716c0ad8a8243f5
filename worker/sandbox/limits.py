"""Kernel-enforced limits for one evaluation: a cgroup of its own, made by the worker beside
itself, that the sandbox joins before anything of the evaluation runs.

Where the worker may manage a cgroup v2 subtree (a delegated one: `memory` and `pids` in its
`cgroup.subtree_control`, writable by the worker's user), the job gets `memory.max` (which
counts shared memory, memfd and tmpfs pages, the scratch tmpfs among them), `memory.swap.max` 0
and `pids.max`. On a cgroup v1 host with writable `memory` and `pids` hierarchies (a worker
running as root), `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, so swap is no way
around it) and `pids.max`. Where neither exists, `JobCgroup.create` says why, and the worker
falls back to polling the resident size of the process tree (stated in the provenance).
"""

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
V2_CONTROLLERS = ("memory", "pids")


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, super options) of every cgroup file system."""
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            fstype, options = fields[separator + 1], fields[separator + 3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[4], fstype, set(options.split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup in each hierarchy: {"": v2 path, "memory": v1 path, ...}."""
    paths = {}
    with open("/proc/self/cgroup") as cgroups:
        for line in cgroups:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _inside(mount: str, own: str) -> Path:
    """The worker's own cgroup folder where the mount shows it, else the mount's root."""
    candidate = Path(mount) / own.lstrip("/")
    return candidate if candidate.is_dir() else Path(mount)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _keyed(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


@dataclass
class JobCgroup:
    """The cgroup folder(s) of one evaluation: one for cgroup v2, one per controller for v1."""

    version: int
    folders: dict[str, Path]
    memory_bytes: int
    pids: int
    facts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls, name: str, *, memory_bytes: int, pids: int, delegated: Path | None = None
    ) -> "tuple[JobCgroup | None, str]":
        """A new cgroup for the job with its limits set, or None and why not."""
        reasons = []
        try:
            mounts, own = _mounts(), _own_paths()
        except OSError as error:
            return None, f"no cgroup: {error.strerror}"
        v2 = delegated
        if v2 is None:
            mounted = [point for point, fstype, _options in mounts if fstype == "cgroup2"]
            v2 = _inside(mounted[0], own.get("", "/")) if mounted else None
        if v2 is not None:
            try:
                return cls._create_v2(v2 / name, memory_bytes, pids), ""
            except OSError as error:
                reasons.append(f"cgroup v2 at {v2}: {error.strerror or error}")
        v1 = {}
        for controller in V2_CONTROLLERS:
            points = [
                p for p, fstype, options in mounts if fstype == "cgroup" and controller in options
            ]
            if points:
                v1[controller] = _inside(points[0], own.get(controller, "/")) / name
        if len(v1) == len(V2_CONTROLLERS):
            try:
                return cls._create_v1(v1, memory_bytes, pids), ""
            except OSError as error:
                reasons.append(f"cgroup v1: {error.strerror or error}")
        elif not reasons:
            reasons.append("no cgroup v2 subtree and no cgroup v1 memory and pids hierarchies")
        return None, "no cgroup of its own (" + "; ".join(reasons) + ")"

    @classmethod
    def _create_v2(cls, folder: Path, memory_bytes: int, pids: int) -> "JobCgroup":
        enabled = (folder.parent / "cgroup.subtree_control").read_text().split()
        missing = [name for name in V2_CONTROLLERS if name not in enabled]
        if missing:
            raise OSError(0, f"{', '.join(missing)} not delegated (cgroup.subtree_control)")
        folder.mkdir()
        job = cls(2, {"memory": folder, "pids": folder}, memory_bytes, pids)
        try:
            if memory_bytes:
                (folder / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(pids))
        except OSError:
            job.remove()
            raise
        job.facts = {
            "memory_limit": (
                f"{memory_bytes // MIB} MiB, cgroup v2 memory.max (counts shared memory, memfd "
                "and tmpfs), no swap"
                if memory_bytes
                else "none asked (cgroup v2 memory accounting)"
            ),
            "pids_limit": f"{pids} processes and threads, cgroup v2 pids.max",
        }
        return job

    @classmethod
    def _create_v1(cls, folders: dict[str, Path], memory_bytes: int, pids: int) -> "JobCgroup":
        job = cls(1, {}, memory_bytes, pids)
        try:
            for controller, folder in folders.items():
                folder.mkdir()
                job.folders[controller] = folder
            memory = folders["memory"]
            swap = "memory.memsw.limit_in_bytes"
            if memory_bytes:
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                if (memory / swap).exists():
                    (memory / swap).write_text(str(memory_bytes))
            (folders["pids"] / "pids.max").write_text(str(pids))
        except OSError:
            job.remove()
            raise
        job.facts = {
            "memory_limit": (
                f"{memory_bytes // MIB} MiB, cgroup v1 memory.limit_in_bytes (counts shared "
                "memory, memfd and tmpfs)" + (", swap included" if (memory / swap).exists() else "")
                if memory_bytes
                else "none asked (cgroup v1 memory accounting)"
            ),
            "pids_limit": f"{pids} processes and threads, cgroup v1 pids.max",
        }
        return job

    def procs_files(self) -> list[str]:
        """The files the sandbox's first process writes its pid to, joining every hierarchy."""
        return [str(folder / "cgroup.procs") for folder in dict.fromkeys(self.folders.values())]

    def members(self) -> list[int]:
        pids: set[int] = set()
        for path in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(pid) for pid in Path(path).read_text().split())
        return sorted(pids)

    def memory_peak_bytes(self) -> int:
        folder = self.folders["memory"]
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return _read_int(folder / name)

    def out_of_memory(self) -> bool:
        """Whether the kernel refused the job memory (and killed a process of it for that)."""
        folder = self.folders["memory"]
        if self.version == 2:
            return _keyed(folder / "memory.events").get("oom_kill", 0) > 0
        return _keyed(folder / "memory.oom_control").get("oom_kill", 0) > 0

    def pids_refused(self) -> int:
        """How many times a fork or a new thread was refused for the pids limit."""
        return _keyed(self.folders["pids"] / "pids.events").get("max", 0)

    def kill(self) -> None:
        """SIGKILL to every process still in the cgroup, whatever namespace or session it made."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                (self.folders["memory"] / "cgroup.kill").write_text("1")
        for _ in range(50):
            members = self.members()
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        for folder in dict.fromkeys(self.folders.values()):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # its last processes are still exiting
