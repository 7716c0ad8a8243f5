"""Runs one evaluation in a sandbox of its own.

`run_sandboxed` (the worker's side) starts `python -m worker.sandbox` (`worker/sandbox/
__main__.py`, the inside) under bubblewrap: an allowlisted file system, every namespace, a new
session, no capabilities, a system-call filter and a minimal /dev (`worker.sandbox.bwrap`), in
a cgroup of its own with kernel-enforced memory and process limits where the host gives the
worker one (`worker.sandbox.limits`), with a size-capped tmpfs as its scratch directory. Where
bubblewrap is not installed, the inside enters the namespaces the kernel allows itself
(`worker.sandbox.namespaces`). The request goes in, and the result comes out, through
descriptors of the worker's (no file any process could rename or replace); the worker streams
the output to the job's log, ends the whole process tree when the attempt stops, and writes
the result's provenance from what it observed and launched, never from what the evaluation says
of itself (beyond the facts an evaluator records about its own run).

Isolation levels, in each result's provenance and on the node: "full" (bubblewrap with every
namespace and the system-call filter), "partial" (the fallback namespaces), "none" (no
namespace could be made: the worker then runs only what its node trusts).
"""

import contextlib
import ctypes
import json
import numbers
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
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
from worker.sandbox import bwrap
from worker.sandbox.limits import JobCgroup
from worker.sandbox.seccomp import program_descriptor, seccomp_program
from worker.sandbox.supervision import ProcessTree, stream_output, supervise

MIB = 1024 * 1024
# Metrics and provenance fit in far less; a larger result is not a result.
MAX_RESULT_BYTES = 4 * MIB
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
# Processes and threads: thread pools (torch, OpenMP, tokenizers) grow with the cores.
DEFAULT_PIDS_LIMIT = max(1024, 8 * (os.cpu_count() or 1))
DEFAULT_SCRATCH_MB = 10 * 1024
DEFAULT_SHM_MB = 1024
FULL, PARTIAL, NONE = "full", "partial", "none"
# Joins the job's cgroup(s) before anything of the sandbox runs, then becomes the sandbox.
JOIN_CGROUPS = (
    'for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"'
)
CGROUP_JOIN_FAILED = 125

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


def exit_description(returncode: int) -> str:
    """How a process ended, from its return code, in words."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"was killed by {name}" + (
            " (the host may have run out of memory)" if name == "SIGKILL" else ""
        )
    return f"exited with code {returncode}"


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


@dataclass(frozen=True)
class SandboxLimits:
    """The worker's own limits for every evaluation, beside the benchmark's memory limit."""

    pids: int = DEFAULT_PIDS_LIMIT
    scratch_mb: int = DEFAULT_SCRATCH_MB
    # A cgroup v2 folder delegated to the worker (default: found from /proc/self/cgroup).
    cgroup: Path | None = None


@cache
def isolation_capability() -> dict[str, str]:
    """What this host lets the worker give an evaluation, probed once by running an empty
    sandbox: {"level", "sandbox", "reason"}, with the sandbox's start-up time."""
    found = bwrap.bubblewrap()
    reasons = []
    if found is not None:
        path, version = found
        started = time.monotonic()
        probe = subprocess.run(  # noqa: S603 - a fixed command
            [path, *bwrap.NAMESPACE_OPTIONS, "--disable-userns", "--die-with-parent",
             "--new-session", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--proc", "/proc",
             "--dev", "/dev", "--", "/bin/true"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        startup = f"{(time.monotonic() - started) * 1000:.0f} ms"
        program, filtering = seccomp_program()
        if probe.returncode == 0 and program:
            return {"level": FULL, "sandbox": version, "reason": "", "startup": startup}
        if probe.returncode == 0:
            return {"level": PARTIAL, "sandbox": version, "reason": filtering, "startup": startup}
        reasons.append(f"{version} cannot start here: {probe.stderr.strip()[:300]}")
    else:
        reasons.append("bubblewrap (bwrap) is not installed")
    probe = subprocess.run(  # noqa: S603 - this interpreter and a fixed program
        [sys.executable, "-c", NAMESPACE_PROBE], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return {"level": PARTIAL, "sandbox": "namespaces", "reason": "; ".join(reasons)}
    reasons.append(f"no namespace either: {probe.stdout.strip()}")
    return {"level": NONE, "sandbox": "none", "reason": "; ".join(reasons)}


NAMESPACE_PROBE = (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.unshare(0x10000000 | 0x40000000) and libc.unshare(0x40000000):\n"
    "    print(os.strerror(ctypes.get_errno())); raise SystemExit(1)\n"
)


def _memory_file(name: str, content: bytes = b"") -> int:
    descriptor = os.memfd_create(name, 0)
    os.write(descriptor, content)
    os.lseek(descriptor, 0, os.SEEK_SET)
    return descriptor


def _layout(
    context: EvaluationContext, entry: str, folder: Path, shm_mb: int, limits: SandboxLimits,
    gpu_numbers: list[int],
) -> bwrap.SandboxLayout:  # fmt: skip
    scratch = context.scratch_dir.resolve()
    cached = [fetched.path.resolve() for fetched in [*context.model_files, *context.dataset_files]]
    modules = ["worker", entry.partition(":")[0]]
    read_only = [
        *bwrap.python_paths(modules),
        *bwrap.library_paths(dict(os.environ)),
        *dict.fromkeys(cached),
    ]
    return bwrap.SandboxLayout(
        scratch=scratch,
        read_only=read_only,
        scratch_folders=[
            path for path in (scratch / "model", scratch / "dataset") if path.is_dir()
        ],
        etc_files=bwrap.etc_files(folder, os.getuid(), os.getgid(), scratch),
        scratch_bytes=limits.scratch_mb * MIB,
        shm_bytes=shm_mb * MIB,
        devices=bwrap.gpu_device_nodes(gpu_numbers),
        gpu=bool(context.gpu_indices),
    )


def run_sandboxed(
    spec: EvaluatorSpec,
    context: EvaluationContext,
    *,
    memory_limit_mb: int = 0,
    cache_root: Path | None = None,
    limits: SandboxLimits | None = None,
    gpu_numbers: list[int] | None = None,
) -> SandboxResult:
    """Runs the evaluator `spec` names on `context` in a sandbox. Raises Stopped once
    `context.stop` is set (the process tree is killed first), EvaluationError when the
    evaluation failed or went over a limit: `memory_limit_mb` (0: none), the worker's `limits`.
    `gpu_numbers`: the minor numbers of the GPUs given (default: their indices)."""
    if context.stop.is_set():
        raise Stopped()
    limits = limits or SandboxLimits()
    capability = isolation_capability()
    mode = "bubblewrap" if capability["sandbox"].startswith("bubblewrap") else "namespaces"
    scratch = context.scratch_dir
    (scratch / "tmp").mkdir(exist_ok=True)
    seed = int(context.config.get("seed", DEFAULT_SEED))
    shm_mb = memory_limit_mb or DEFAULT_SHM_MB
    cgroup, no_cgroup = JobCgroup.create(
        f"rx-{scratch.name}",
        memory_bytes=memory_limit_mb * MIB,
        pids=limits.pids,
        delegated=limits.cgroup,
    )
    descriptors: list[int] = []
    try:
        with tempfile.TemporaryDirectory(
            prefix=f"{scratch.name}-sandbox-", dir=scratch.parent
        ) as d:
            request = {
                **_request(spec, context),
                "mode": mode,
                "seed": seed,
                "cache_root": str(cache_root or ""),
                "memory_limit_mb": memory_limit_mb,
            }
            request_fd = _memory_file("request", json.dumps(request).encode())
            result_fd = _memory_file("result")
            descriptors += [request_fd, result_fd]
            env = sandbox_env(scratch, context.env)
            # The command is this interpreter and this module: nothing in it comes from the job.
            command = [
                sys.executable, "-P", "-m", "worker.sandbox",
                "--request-fd", str(request_fd), "--result-fd", str(result_fd),
            ]  # fmt: skip
            layout = None
            if mode == "bubblewrap":
                program, _filtering = seccomp_program()
                seccomp_fd = program_descriptor(program) if program else None
                if seccomp_fd is not None:
                    descriptors.append(seccomp_fd)
                numbers_given = context.gpu_indices if gpu_numbers is None else gpu_numbers
                layout = _layout(context, spec.entry, Path(d), shm_mb, limits, numbers_given)
                command = bwrap.bwrap_arguments(
                    _bwrap_path(), layout, env, command, seccomp_fd=seccomp_fd
                )
                env = {"PATH": os.defpath}
            if cgroup is not None:
                command = [
                    "/bin/sh",
                    "-c",
                    JOIN_CGROUPS,
                    "sh",
                    *cgroup.procs_files(),
                    "--",
                    *command,
                ]
            stopped, returncode = _run(command, env, context, descriptors, memory_limit_mb, cgroup)
            if stopped is None:
                # Over a kernel limit, the evaluation's own error is only the consequence.
                _check_cgroup(cgroup, memory_limit_mb, limits)
                result = _read_result(result_fd, returncode)
                _check_scratch(result, mode, limits)
    finally:
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        if cgroup is not None:
            cgroup.kill()
            cgroup.remove()
    if stopped is not None:
        raise stopped
    if "error" in result:
        raise EvaluationError(str(result["error"]))
    if result.get("stopped"):
        raise EvaluationError("The evaluation was stopped by a signal from outside the worker.")
    isolation = _isolation(
        mode, capability, result, layout, cgroup, no_cgroup, memory_limit_mb, limits
    )
    facts = _dict(result.get("facts"))
    provenance = {
        **facts,
        "seed": seed,
        "evaluator": spec.name,
        "evaluator_version": spec.version,
        "packages": package_versions(spec),
        **_legacy_isolation(isolation, result),
        "isolation": isolation,
    }
    return SandboxResult(checked_metrics(result["metrics"]), provenance)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bwrap_path() -> str:
    found = bwrap.bubblewrap()
    if found is None:
        raise EvaluationError("bubblewrap disappeared from this host while the worker ran.")
    return found[0]


def _run(
    command: list[str],
    env: dict[str, str],
    context: EvaluationContext,
    descriptors: list[int],
    memory_limit_mb: int,
    cgroup: JobCgroup | None,
) -> tuple[Exception | None, int]:
    """Starts the sandbox and waits for it; (why it was stopped or None, its return code)."""
    # Registered as it starts: `end_escaped_processes` must never take it for an escapee.
    with _sandboxes_lock:
        process = subprocess.Popen(  # noqa: S603 - see run_sandboxed
            command,
            cwd=context.scratch_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=descriptors,
        )
        _sandboxes.add(process.pid)
    tree = ProcessTree(process)
    output = cast(IO[bytes], process.stdout)
    reader = threading.Thread(target=stream_output, args=(output, context.log), daemon=True)
    reader.start()
    stopped: Exception | None = None
    try:
        # A cgroup's memory limit is the kernel's: no polling of the resident size then.
        supervise(
            tree, context.stop, 0 if cgroup is not None and cgroup.memory_bytes else memory_limit_mb
        )
    except (Stopped, EvaluationError) as error:
        stopped = error
    finally:
        # Whatever the evaluation left running goes with it.
        tree.kill(grace=0)
        if cgroup is not None:
            cgroup.kill()
        returncode = tree.reap()
        with _sandboxes_lock:
            _sandboxes.discard(process.pid)
        end_escaped_processes()
        reader.join(timeout=5)
        if not reader.is_alive():
            output.close()
    return stopped, returncode


def _check_cgroup(cgroup: JobCgroup | None, memory_limit_mb: int, limits: SandboxLimits) -> None:
    if cgroup is None:
        return
    if memory_limit_mb and cgroup.out_of_memory():
        raise EvaluationError(
            f"Used {cgroup.memory_peak_bytes() // MIB} MiB of memory, over the benchmark's limit "
            f"of {memory_limit_mb} MiB: stopped."
        )
    refused = cgroup.pids_refused()
    if refused:
        raise EvaluationError(
            f"Tried to run more than {limits.pids} processes and threads at once, the worker's "
            f"limit (refused {refused} time(s)): stopped."
        )


def _no_result(returncode: int) -> EvaluationError:
    return EvaluationError(
        f"The evaluation process {exit_description(returncode)} before it reported a result: "
        "see the log."
    )


def _read_result(descriptor: int, returncode: int) -> dict[str, Any]:
    """What the sandbox's supervisor wrote to the worker's result descriptor."""
    size = os.fstat(descriptor).st_size
    if size > MAX_RESULT_BYTES:
        raise EvaluationError("The evaluation's result is larger than any result.")
    content = os.pread(descriptor, size, 0) if size else b""
    if not content and returncode == CGROUP_JOIN_FAILED:
        raise EvaluationError(
            "The sandbox could not join the cgroup the worker made for its limits: see the log."
        )
    if not content:
        raise _no_result(returncode)
    try:
        result = json.loads(content)
    except ValueError:
        raise EvaluationError("The evaluation's result is not valid JSON.") from None
    if not isinstance(result, dict):
        raise EvaluationError("The evaluation's result is not a result.")
    return result


def _check_scratch(result: dict[str, Any], mode: str, limits: SandboxLimits) -> None:
    if mode == "bubblewrap" and result.get("scratch_full") is True:
        raise EvaluationError(
            f"Filled its scratch space, the worker's limit of {limits.scratch_mb} MiB: stopped."
        )


def _isolation(
    mode: str,
    capability: dict[str, str],
    result: dict[str, Any],
    layout: bwrap.SandboxLayout | None,
    cgroup: JobCgroup | None,
    no_cgroup: str,
    memory_limit_mb: int,
    limits: SandboxLimits,
) -> dict[str, Any]:
    """The isolation of this run, as the worker launched and observed it."""
    facts: dict[str, Any]
    if mode == "bubblewrap" and layout is not None:
        program, filtering = seccomp_program()
        facts = {
            "level": FULL if program else PARTIAL,
            "sandbox": capability["sandbox"],
            "namespaces": ", ".join(bwrap.NAMESPACES),
            "filesystem": "allowlist: the interpreter, the evaluator's libraries and this job's "
            "files, read-only; scratch a private tmpfs",
            "system_calls": filtering,
            "capabilities": "none, and no way to gain any",
            "session": "a new session, ended with the worker",
            "devices": layout.devices,
            "mounted": layout.mounted(),
            "scratch_quota": f"{limits.scratch_mb} MiB (tmpfs"
            + (", counted in the job's memory)" if cgroup is not None else ")"),
            "shared_memory": f"a /dev/shm tmpfs of {layout.shm_bytes // MIB} MiB; SysV IPC in "
            "the job's own IPC namespace",
        }
    else:
        reported = _dict(result.get("sandbox"))
        network = str(reported.get("network", "not isolated"))
        facts = {
            "level": PARTIAL if network.startswith("isolated") else NONE,
            "sandbox": f"namespaces ({capability['reason']})",
            "namespaces": network,
            "filesystem": str(reported.get("files", "not isolated")),
            "system_calls": "no filter",
            "scratch_quota": "none: the scratch directory is on the worker's disk",
        }
    if cgroup is not None:
        facts.update(cgroup.facts)
    else:
        facts["memory_limit"] = (
            f"{memory_limit_mb} MiB of resident memory, polled every 0.1 s (shared memory and "
            f"memfd not counted): {no_cgroup}"
            if memory_limit_mb
            else f"none asked; {no_cgroup}"
        )
        facts["pids_limit"] = f"none: {no_cgroup}"
    return facts


def _legacy_isolation(isolation: dict[str, Any], result: dict[str, Any]) -> dict[str, str]:
    """The one-line network, files and processes facts results have always carried."""
    if isolation["sandbox"].startswith("bubblewrap"):
        return {
            "network": "isolated (bubblewrap: own network namespace, loopback only)",
            "files": "only this job's files and the evaluator's libraries, read-only "
            "(an allowlist); scratch a private tmpfs",
            "processes": "own PID namespace",
        }
    reported = _dict(result.get("sandbox"))
    return {
        name: str(reported.get(name, "not isolated")) for name in ("network", "files", "processes")
    }
