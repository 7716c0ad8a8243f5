"""The sandbox's fallback where bubblewrap is not installed: the evaluation's own process moves
into namespaces of its own, as far as the kernel allows (user, network, mount, PID), hides the
worker's file cache and the other jobs' scratch folders, makes the rest of the file system
read-only and drops every capability before any evaluation code runs.

This hides some folders rather than allowing only what the job needs, and has no IPC, UTS or
cgroup namespace and no system-call filter: results it produces are "partial" isolation.
"""

import ctypes
import fcntl
import os
import signal
import socket
import struct
from pathlib import Path
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_NOEXEC = 0x8
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
# mount_setattr(2), Linux 5.12 and later; the same number on x86-64 and arm64.
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
DEFAULT_SHM_MB = 1024
# Replaced by a tmpfs of the evaluation's own, within its memory limit.
SHARED_MEMORY = "/dev/shm"  # noqa: S108
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class _Refused(OSError):
    pass


def _call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise _Refused(errno, f"{what}: {os.strerror(errno)}")


def isolate(request: dict[str, Any]) -> tuple[dict[str, str], bool]:
    """Moves this process (still single-threaded) into namespaces of its own, as far as the
    kernel allows: a network namespace (the host's interfaces and every remote address out of
    reach, its own loopback up), a mount namespace in which the worker's file cache and scratch
    folder show only this job's files (the cached ones read-only), and a PID namespace for the
    evaluation (see `become_init`). Returns what it got, or why not, for the provenance, and
    whether there is a PID namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    # A user namespace lets an unprivileged worker make the others, and takes the host's
    # capabilities away from a worker running as root.
    attempts = [
        (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID, "user, network, mount, PID"),
        (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS, "user, network, mount"),
        (CLONE_NEWUSER | CLONE_NEWNET, "user, network"),
        (CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID, "network, mount, PID"),
        (CLONE_NEWNET | CLONE_NEWNS, "network, mount"),
        (CLONE_NEWNET, "network"),
    ]
    refusals = []
    for flags, kinds in attempts:  # noqa: B007 - the namespaces obtained are used below
        if libc.unshare(flags) == 0:
            break
        refusals.append(os.strerror(ctypes.get_errno()))
    else:
        reason = f"not isolated: no new namespace ({'; '.join(dict.fromkeys(refusals))})"
        return {"network": reason, "files": reason, "processes": reason}, False
    how = f"new {kinds} namespaces"
    isolation = {"network": f"isolated ({how})"}
    try:
        _loopback_up()
    except OSError as error:
        isolation["network"] = f"isolated ({how}; loopback down: {error.strerror})"
    isolation["processes"] = (
        "own PID namespace" if flags & CLONE_NEWPID else "not isolated: no new PID namespace"
    )
    if not flags & CLONE_NEWNS:
        isolation["files"] = "not isolated: no new mount namespace"
        return isolation, bool(flags & CLONE_NEWPID)
    try:
        if flags & CLONE_NEWUSER:
            _map_own_ids(uid, gid)
        _hide_other_jobs(libc, request)
    except OSError as error:
        isolation["files"] = f"not isolated: {error}"
    else:
        isolation["files"] = (
            "other jobs' files and the worker's folders hidden; the rest of the host readable"
        )
    return isolation, bool(flags & CLONE_NEWPID)


def _map_own_ids(uid: int, gid: int) -> None:
    """The same ids inside the new user namespace as outside (read before it was made: inside,
    an unmapped id reads as 65534): the job's files keep their owner."""
    # One write each, of whole lines, without O_TRUNC: how the kernel takes these files.
    for name, line in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {uid} 1\n"),
        ("gid_map", f"{gid} {gid} 1\n"),
    ):
        descriptor = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)


def _hide_other_jobs(libc: ctypes.CDLL, request: dict[str, Any]) -> None:
    """Empty file systems over the cache and over the folder of every job's scratch directory,
    with this job's scratch directory (writable) and its cached files (read-only) put back."""
    scratch = Path(os.path.realpath(request["scratch_dir"]))
    cache_root = (
        Path(os.path.realpath(request["cache_root"])) if request.get("cache_root") else None
    )
    cached = [
        Path(os.path.realpath(entry["path"]))
        for entry in [*request["model_files"], *request["dataset_files"]]
    ]
    if cache_root is not None:
        cached = [path for path in cached if path.is_relative_to(cache_root)]
    _call(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
    # Opened in this mount namespace before anything is covered: the mounts below bind them
    # back from these handles.
    kept = [(scratch, os.open(scratch, os.O_PATH), False)]
    kept += [(path, os.open(path, os.O_PATH), True) for path in dict.fromkeys(cached)]
    # Outer folders first: the cache may lie inside the scratch folder.
    covered = sorted(
        {scratch.parent, *([cache_root] if cache_root else [])}, key=lambda p: len(p.parts)
    )
    for folder in covered:
        folder.mkdir(parents=True, exist_ok=True)
        _call(
            libc.mount(
                b"tmpfs", bytes(folder), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755"
            ),
            f"cover {folder}",
        )
    for path, handle, read_only in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        if read_only:
            path.touch()
        else:
            path.mkdir(exist_ok=True)
        source = f"/proc/self/fd/{handle}".encode()
        _call(libc.mount(source, bytes(path), None, MS_BIND, None), f"show {path}")
        if read_only:
            _call(
                libc.mount(None, bytes(path), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None),
                f"protect {path}",
            )
        os.close(handle)


def become_init(result_fd: int) -> None:
    """Forks the evaluation's process, the first of the new PID namespace: it sees no process
    outside, and when it ends the kernel ends every process of the namespace. This process
    waits for it and exits as it did; only the forked process returns."""
    child = os.fork()
    if child == 0:
        return
    os.close(result_fd)  # the forked process reports the result
    # The worker's SIGTERM is for the evaluation; its SIGKILL ends this process too.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _pid, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def lock_down(request: dict[str, Any], isolation: dict[str, str], *, own_pids: bool) -> None:
    """Before any evaluation code runs: a /proc of the PID namespace, the whole file system
    read-only but the job's scratch directory, a private /dev/shm, the mounts locked (a new
    user namespace), and no capabilities left, so the evaluation cannot undo any of it."""
    libc = ctypes.CDLL(None, use_errno=True)
    mounted = isolation["files"].startswith("only this job's files")
    try:
        if own_pids and mounted:
            _call(
                libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
                "mount /proc",
            )
        if mounted:
            # Mounts copied into a less privileged namespace are locked: no unmounting them.
            uid, gid = os.getuid(), os.getgid()
            _call(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "lock the mounts")
            _map_own_ids(uid, gid)
            _mount_setattr(libc, "/", set_flags=MOUNT_ATTR_RDONLY, recursive=True)
            _mount_setattr(libc, "/proc", clear_flags=MOUNT_ATTR_RDONLY)
            _mount_setattr(
                libc, os.path.realpath(request["scratch_dir"]), clear_flags=MOUNT_ATTR_RDONLY
            )
            if os.path.isdir(SHARED_MEMORY):
                shm_mb = int(request.get("memory_limit_mb") or DEFAULT_SHM_MB)
                _call(
                    libc.mount(b"tmpfs", SHARED_MEMORY.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                               f"size={shm_mb}m,mode=1777".encode()),
                    "a private /dev/shm",
                )  # fmt: skip
            isolation["files"] += "; everything else read-only"
    except OSError as error:
        isolation["files"] += f"; everything else as the worker's user sees it ({error})"
    _drop_capabilities(libc)


def _mount_setattr(
    libc: ctypes.CDLL, path: str, *, set_flags: int = 0, clear_flags: int = 0, recursive=False
) -> None:
    attributes = _MountAttr(set_flags, clear_flags, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    result = libc.syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attributes),
        ctypes.sizeof(attributes),
    )  # fmt: skip
    _call(result, f"mount_setattr {path}")


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """No capabilities, now or after exec (root's included), and no way to gain any."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    libc.capset(ctypes.byref(header), (_CapData * 2)())
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _loopback_up() -> None:
    # Local servers (a tokenizer service, torch.distributed's store) need 127.0.0.1.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))
