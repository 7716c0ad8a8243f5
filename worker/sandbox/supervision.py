"""The worker's hold on a running sandbox: its process tree (signalled and ended as a whole,
also what left its process group), its output streamed to the job's log line by line, and the
wait for its end under the attempt's stop event and, where no cgroup limits its memory, the
resident size of the tree polled every 0.1 s."""

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO

import psutil

from worker.evaluation import EvaluationError, Stopped

KILL_GRACE_SECONDS = 2.0
POLL_SECONDS = 0.1
MAX_LINE_BYTES = 64 * 1024
MIB = 1024 * 1024


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


def stream_output(pipe: IO[bytes], log: Callable[[str], None]) -> None:
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


def supervise(tree: ProcessTree, stop: threading.Event, memory_limit_mb: int) -> None:
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
