"""Runs one evaluation in a subprocess of its own.

`run_sandboxed` (the worker's side) starts `python -m worker.sandbox REQUEST RESULT` in a new
process group with a minimal environment (no worker settings, HOME and TMPDIR in the attempt's
scratch directory, Hugging Face offline), streams its output to the job's log line by line, and
kills the whole process tree when the attempt is stopped (time limit, cancel) or uses more
memory than its benchmark allows.

`main` (the subprocess's side) first leaves the host's network where the OS allows it (a new
network namespace), then imports the evaluator named by its spec, runs it, and writes its
metrics and provenance, or its error, to the result file.
"""

import contextlib
import ctypes
import fcntl
import importlib
import json
import numbers
import os
import random
import resource
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import psutil

from worker.evaluation import (
    MAX_METRIC_NAME_LENGTH,
    MAX_METRICS,
    EvaluationContext,
    EvaluationError,
    FetchedFile,
    Stopped,
    finite_number,
)
from worker.evaluators import DEFAULT_SEED, EvaluatorSpec, package_versions

KILL_GRACE_SECONDS = 2.0
POLL_SECONDS = 0.1
MAX_LINE_BYTES = 64 * 1024
MIB = 1024 * 1024
# Metrics and provenance fit in far less; a larger file is not a result.
MAX_RESULT_BYTES = 4 * MIB

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
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
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

# Host variables CUDA and its libraries need; everything else of the worker's stays behind.
PASSED_VARIABLES = ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH")
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


@dataclass(frozen=True)
class SandboxResult:
    metrics: dict[str, int | float]
    # What the evaluator recorded, with its name, version, package versions and network.
    provenance: dict[str, Any]


def checked_metrics(metrics: Any) -> dict[str, int | float]:
    """The evaluator's metrics as JSON numbers (numpy scalars included)."""
    if not isinstance(metrics, dict) or not metrics:
        raise EvaluationError(
            f"The evaluator returned {metrics!r:.200}, not metrics {{name: number}}."
        )
    if len(metrics) > MAX_METRICS:
        raise EvaluationError(
            f"The evaluator returned {len(metrics)} metrics: at most {MAX_METRICS}."
        )
    checked: dict[str, int | float] = {}
    for name, value in metrics.items():
        if len(str(name)) > MAX_METRIC_NAME_LENGTH:
            raise EvaluationError(
                f"Metric name {str(name)[:40]!r}… is longer than {MAX_METRIC_NAME_LENGTH} "
                "characters."
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise EvaluationError(f"Metric {name!r} is not a number: {value!r:.100}.")
        number = int(value) if isinstance(value, numbers.Integral) else float(value)
        if not finite_number(number):
            raise EvaluationError(f"Metric {name!r} is {value!r:.100}: not a finite number.")
        checked[str(name)] = number
    return checked


def sandbox_env(scratch_dir: Path, device_env: dict[str, str]) -> dict[str, str]:
    """The evaluator's whole environment: nothing of the worker's settings or secrets."""
    env = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
    env.setdefault("PATH", os.defpath)
    # NVIDIA_* set by container images (NVIDIA_TF32_OVERRIDE changes figures); an API key is not.
    env.update(
        (name, value)
        for name, value in os.environ.items()
        if name.startswith("NVIDIA_") and not any(mark in name for mark in SECRET_MARKERS)
    )
    importable = [os.path.abspath(entry) for entry in sys.path if entry]
    env.update(
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
        HOME=str(scratch_dir),
        TMPDIR=str(scratch_dir / "tmp"),
        HF_HOME=str(scratch_dir / ".cache" / "huggingface"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(dict.fromkeys(importable)),
        # Output reaches the job's log as it is printed, not when a buffer fills.
        PYTHONUNBUFFERED="1",
        PYTHONHASHSEED="0",
    )
    env.update(device_env)
    return env


def _file_entry(fetched: FetchedFile) -> dict[str, Any]:
    return {
        "filename": fetched.filename,
        "sha256": fetched.sha256,
        "size": fetched.size,
        "format": fetched.format,
        "path": str(fetched.path),
    }


def _request(spec: EvaluatorSpec, context: EvaluationContext) -> dict[str, Any]:
    return {
        "evaluator": {
            "name": spec.name,
            "entry": spec.entry,
            "version": spec.version,
            "packages": list(spec.packages),
        },
        "job": context.job,
        "attempt": context.attempt,
        "config": context.config,
        "model_files": [_file_entry(fetched) for fetched in context.model_files],
        "dataset_files": [_file_entry(fetched) for fetched in context.dataset_files],
        "scratch_dir": str(context.scratch_dir),
        "env": context.env,
        "devices": context.devices,
        "gpu_indices": context.gpu_indices,
        "time_limit_seconds": context.time_limit_seconds,
    }


class ProcessTree:
    """The sandbox process and everything it started: its process group, and every descendant
    seen since, also one that left the group (setsid) or lost its parent."""

    def __init__(self, process: subprocess.Popen) -> None:
        # Never reaped before the end (no poll() until `reap`): while the leader is a zombie its
        # group id cannot be reused, so signalling the group cannot reach a stranger.
        self.process = process
        self.group = process.pid
        self.root = psutil.Process(process.pid)
        self.seen: set[psutil.Process] = set()
        try:
            self._exit_fd: int | None = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            self._exit_fd = None

    def wait_exit(self, timeout: float) -> bool:
        """Whether the sandbox process has exited, waiting up to `timeout` seconds (not reaped)."""
        if self._exit_fd is not None:
            return bool(select.select([self._exit_fd], [], [], timeout)[0])
        deadline = time.monotonic() + timeout
        while True:
            if os.waitid(os.P_PID, self.group, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.02, timeout))

    def descendants(self) -> list[psutil.Process]:
        try:
            found = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        self.seen.update(found)
        return found

    def rss_bytes(self) -> int:
        total = 0
        for member in [self.root, *self.descendants()]:
            with contextlib.suppress(psutil.Error):
                total += member.memory_info().rss
        return total

    def _signal(self, signum: int) -> None:
        self.descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.group, signum)
        for member in self.seen:
            with contextlib.suppress(psutil.Error):
                member.send_signal(signum)

    def _gone(self) -> bool:
        return self.wait_exit(0) and not any(_alive(member) for member in self.seen)

    def kill(self, *, grace: float = KILL_GRACE_SECONDS) -> None:
        """SIGTERM to every process, then SIGKILL to those still there after `grace` seconds."""
        if grace > 0:
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not self._gone() and time.monotonic() < deadline:
                self.wait_exit(POLL_SECONDS / 2)
        self._signal(signal.SIGKILL)

    def reap(self) -> int:
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None
        return self.process.wait()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _printable(raw: bytes) -> str:
    line = raw.decode("utf-8", errors="replace").rstrip("\r")
    # A progress bar redraws itself with carriage returns: its latest state is the line.
    return line.rsplit("\r", 1)[-1]


def _stream_output(pipe: IO[bytes], log: Callable[[str], None]) -> None:
    pending = b""
    while chunk := os.read(pipe.fileno(), 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            log(_printable(raw))
        while len(pending) > MAX_LINE_BYTES:
            log(_printable(pending[:MAX_LINE_BYTES]))
            pending = pending[MAX_LINE_BYTES:]
    if pending:
        log(_printable(pending))


def exit_description(returncode: int) -> str:
    """How a process ended, from its return code, in words."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"was killed by {name}" + (
            " (the host may have run out of memory)" if name == "SIGKILL" else ""
        )
    return f"exited with code {returncode}"


def run_sandboxed(
    spec: EvaluatorSpec,
    context: EvaluationContext,
    *,
    memory_limit_mb: int = 0,
    cache_root: Path | None = None,
) -> SandboxResult:
    """Runs the evaluator `spec` names on `context` in a sandboxed subprocess. Raises Stopped
    once `context.stop` is set (the process tree is killed first), EvaluationError when the
    evaluation failed or went over `memory_limit_mb` (0: no limit)."""
    if context.stop.is_set():
        raise Stopped()
    scratch = context.scratch_dir
    (scratch / "tmp").mkdir(exist_ok=True)
    # The request and result live beside the scratch directory, not in the evaluator's space.
    with tempfile.TemporaryDirectory(prefix=f"{scratch.name}-sandbox-", dir=scratch.parent) as d:
        request_path, result_path = Path(d) / "request.json", Path(d) / "result.json"
        request = {
            **_request(spec, context),
            "cache_root": str(cache_root or ""),
            "memory_limit_mb": memory_limit_mb,
        }
        request_path.write_text(json.dumps(request))
        # Registered as it starts: `end_escaped_processes` must never take it for an escapee.
        with _sandboxes_lock:
            # The command is this interpreter and this module: nothing in it comes from the job.
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-P", "-m", "worker.sandbox", str(request_path), str(result_path)],
                cwd=scratch,
                env=sandbox_env(scratch, context.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _sandboxes.add(process.pid)
        tree = ProcessTree(process)
        output = cast(IO[bytes], process.stdout)
        reader = threading.Thread(target=_stream_output, args=(output, context.log), daemon=True)
        reader.start()
        try:
            _supervise(tree, context.stop, memory_limit_mb)
        finally:
            # Whatever the evaluation left running goes with it.
            tree.kill(grace=0)
            returncode = tree.reap()
            with _sandboxes_lock:
                _sandboxes.discard(process.pid)
            end_escaped_processes()
            reader.join(timeout=5)
            if not reader.is_alive():
                output.close()
        result = _read_result(result_path, returncode)
    if "error" in result:
        raise EvaluationError(str(result["error"]))
    if result.get("stopped"):
        raise EvaluationError("The evaluation was stopped by a signal from outside the worker.")
    return SandboxResult(checked_metrics(result["metrics"]), dict(result["provenance"]))


def _no_result(returncode: int) -> EvaluationError:
    return EvaluationError(
        f"The evaluation process {exit_description(returncode)} before it reported a result: "
        "see the log."
    )


def _read_result(path: Path, returncode: int) -> dict[str, Any]:
    """The sandbox's result file, read so that whatever the evaluation put in its place (a
    FIFO, a link to /dev/zero, a huge file) cannot block or flood the worker."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _no_result(returncode) from None
    except OSError as error:
        raise EvaluationError(f"The evaluation's result file was tampered with: {error}.") from None
    with os.fdopen(descriptor, "rb") as file:
        found = os.fstat(file.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_size > MAX_RESULT_BYTES:
            raise EvaluationError(
                "The evaluation's result file was replaced by something that is not a result."
            )
        content = file.read(MAX_RESULT_BYTES)
        if not content:
            raise _no_result(returncode)
        try:
            result = json.loads(content)
        except ValueError:
            raise EvaluationError("The evaluation's result file is not valid JSON.") from None
    if not isinstance(result, dict):
        raise EvaluationError("The evaluation's result file is not a result.")
    return result


# The sandbox processes running now; whether this process adopts orphans (the worker does).
_sandboxes: set[int] = set()
_sandboxes_lock = threading.Lock()
_adopting = False


def adopt_orphans() -> None:
    """Makes this process (the worker, which starts no other processes) the parent of any
    process that escapes a sandbox whose own process already exited, so that
    `end_escaped_processes` can find it."""
    global _adopting
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _adopting = True


def hide_from_same_user() -> None:
    """Keeps other processes of this user (an evaluation among them) from reading this
    process's memory, environment and open files through /proc: the node token is in there."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def end_escaped_processes() -> list[int]:
    """Kills this process's children that are not a running sandbox: in a worker that adopts
    orphans, those are processes that outlived the sandbox they came from. Returns their pids."""
    if not _adopting:
        return []
    with _sandboxes_lock:
        escaped = [child for child in psutil.Process().children() if child.pid not in _sandboxes]
        for child in escaped:
            with contextlib.suppress(psutil.Error):
                child.kill()
    psutil.wait_procs(escaped, timeout=1)
    return [child.pid for child in escaped]


def _end_descendants() -> None:
    """Ends every process the evaluation started. Orphans are re-parented to this process (a
    subreaper), so one that double-forked away from its parent is found too."""
    me = psutil.Process()
    for _ in range(100):
        children = me.children(recursive=True)
        if not children:
            return
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=0.1)


def _supervise(tree: ProcessTree, stop: threading.Event, memory_limit_mb: int) -> None:
    """Waits for the sandbox to exit. Memory is checked by polling the resident size of the
    whole tree: an address-space limit (RLIMIT_AS) would refuse CUDA and onnxruntime, which
    reserve far more virtual memory than they use, and would not count child processes."""
    limit = memory_limit_mb * MIB
    while not tree.wait_exit(POLL_SECONDS):
        if stop.is_set():
            tree.kill()
            raise Stopped()
        if limit:
            used = tree.rss_bytes()
            if used > limit:
                tree.kill()
                raise EvaluationError(
                    f"Used {used // MIB} MiB of memory, over the benchmark's limit of "
                    f"{memory_limit_mb} MiB: stopped."
                )
        else:
            tree.descendants()


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
        isolation["files"] = "only this job's files (the cached ones read-only)"
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


def become_init(result_file: IO[str]) -> None:
    """Forks the evaluation's process, the first of the new PID namespace: it sees no process
    outside, and when it ends the kernel ends every process of the namespace. This process
    waits for it and exits as it did; only the forked process returns."""
    child = os.fork()
    if child == 0:
        return
    os.close(result_file.fileno())  # the evaluation's process writes the result
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


def _log_line(line: str) -> None:
    print(line, flush=True)


def _fetched(entry: dict[str, Any]) -> FetchedFile:
    return FetchedFile(
        str(entry["filename"]),
        str(entry["sha256"]),
        int(entry["size"]),
        str(entry["format"]),
        Path(entry["path"]),
    )


def _evaluate(
    request: dict[str, Any], stop: threading.Event, isolation: dict[str, str]
) -> dict[str, Any]:
    described = request["evaluator"]
    spec = EvaluatorSpec(
        name=str(described["name"]),
        description="",
        model_formats=(),
        entry=str(described["entry"]),
        packages=tuple(described["packages"]),
        version=str(described["version"]),
    )
    module_name, _, function_name = spec.entry.partition(":")
    evaluate = getattr(importlib.import_module(module_name), function_name)
    seed = int(request["config"].get("seed", DEFAULT_SEED))
    random.seed(seed)
    if "numpy" in sys.modules:  # seeded only where the evaluator uses it: importing costs time
        sys.modules["numpy"].random.seed(seed)
    context = EvaluationContext(
        job=int(request["job"]),
        attempt=int(request["attempt"]),
        evaluator=spec.name,
        config=dict(request["config"]),
        model_files=[_fetched(entry) for entry in request["model_files"]],
        dataset_files=[_fetched(entry) for entry in request["dataset_files"]],
        scratch_dir=Path(request["scratch_dir"]),
        env=dict(request["env"]),
        devices=list(request["devices"]),
        gpu_indices=[int(index) for index in request["gpu_indices"]],
        time_limit_seconds=int(request["time_limit_seconds"]),
        stop=stop,
        log=_log_line,
    )
    metrics = checked_metrics(evaluate(context))
    provenance = {
        "seed": seed,
        **context.provenance,
        "evaluator": spec.name,
        "evaluator_version": spec.version,
        "packages": package_versions(spec),
        **isolation,
    }
    return {"metrics": metrics, "provenance": provenance}


def main(request_path: str, result_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    # Opened before the isolation covers the folder it is in, and written only at the end.
    result_file = open(result_path, "w")  # noqa: SIM115 - held open until the very end
    isolation, own_pids = isolate(request)
    if own_pids:
        become_init(result_file)
    lock_down(request, isolation, own_pids=own_pids)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Orphans of the evaluation become this process's children, so the worker still sees them.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # The evaluation's own processes cannot reach this one's open result file through /proc.
    hide_from_same_user()
    stop = threading.Event()
    # The worker's SIGTERM asks the evaluator to stop; SIGKILL follows if it does not.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    result: dict[str, Any]
    try:
        result = _evaluate(request, stop, isolation)
    except EvaluationError as error:
        result = {"error": str(error)}
    except Stopped:
        result = {"stopped": True}
    except (Exception, SystemExit) as error:
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
    _end_descendants()
    result_file.write(json.dumps(result, default=str))
    result_file.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter shutdown: an evaluator's leftover threads must not hold the result back.
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:3])
