"""The bubblewrap command line of one evaluation: an allowlisted file system, every namespace, a
new session, no capabilities, the worker's system-call filter and a minimal /dev.

What the evaluation sees of the host is only what `SandboxLayout` lists: the interpreter and the
evaluator's libraries read-only, the shared libraries and the few /etc files they need
read-only, its model and dataset files read-only, a size-capped tmpfs as its scratch directory,
a size-capped /dev/shm, and the device nodes of the GPUs it was given (plus the control nodes
CUDA needs). Nothing else of the host is mounted: no home folders, no sockets, no /sys/class.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

NAMESPACE_OPTIONS = (
    "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
    "--unshare-cgroup",
)  # fmt: skip
# Each of these, and the mount namespace bubblewrap always makes.
NAMESPACES = ("user", "PID", "network", "IPC", "UTS", "cgroup", "mount")
# Where the host's shared libraries and programs live; merged-/usr hosts have links at the root.
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The dynamic loader's cache (without it, no library in a multiarch folder is found), the time
# zone, and what the name service and platform modules read. Never passwd, shadow or sudoers:
# the sandbox gets its own passwd and group.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "nsswitch.conf", "os-release")
# CPU topology and NUMA nodes: onnxruntime, OpenBLAS and torch size their thread pools from them.
SYS_FOLDERS = ("/sys/devices/system/cpu", "/sys/devices/system/node")
# What CUDA opens besides the GPUs themselves; every /dev/nvidiaN not given stays out.
GPU_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
# The driver's version and the PCI devices CUDA enumerates (the GPUs given are the only ones
# it can open).
GPU_SYS_FOLDERS = ("/sys/module/nvidia", "/sys/bus/pci/devices")
SANDBOX_HOSTNAME = "sandbox"


@cache
def bubblewrap() -> tuple[str, str] | None:
    """(path, "bubblewrap 0.8.0") of the installed bwrap, or None."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    try:
        version = subprocess.run(  # noqa: S603 - a fixed command
            [path, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return path, version or "bubblewrap"


def _source_folder_entries(folder: Path) -> list[Path]:
    """A source folder on sys.path (a checkout): its packages and modules, none of its other
    files (a checkout also holds settings, databases, environment files)."""
    entries = []
    for child in sorted(folder.iterdir()):
        package = child.is_dir() and (child / "__init__.py").is_file()
        if package or (child.is_file() and child.suffix in (".py", ".so")):
            entries.append(child)
    return entries


def python_paths(modules: Iterable[str]) -> list[Path]:
    return list(_python_paths(tuple(modules), tuple(sys.path)))


@cache
def _python_paths(modules: tuple[str, ...], search_path: tuple[str, ...]) -> tuple[Path, ...]:
    """What the interpreter needs to import the sandbox and the evaluator: its prefixes, every
    site-packages folder on sys.path, the importable entries of any other folder there, and the
    packages of `modules` wherever they live (an editable install maps them to a checkout)."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = set(prefixes)
    for entry in search_path:
        if not entry or not os.path.isdir(entry):
            continue
        folder = Path(entry).resolve()
        if any(folder.is_relative_to(prefix) for prefix in prefixes):
            continue
        if folder.name in ("site-packages", "dist-packages"):
            paths.add(folder)
        else:
            paths.update(_source_folder_entries(folder))
    for module in modules:
        spec = importlib.util.find_spec(module.split(".")[0])
        if spec is None:
            continue
        if spec.submodule_search_locations:
            paths.update(Path(p).resolve() for p in spec.submodule_search_locations)
        elif spec.origin and os.path.isabs(spec.origin):
            paths.add(Path(spec.origin).resolve())
    # Outer folders first; a folder inside another mounted one needs no mount of its own.
    kept: list[Path] = []
    for path in sorted(paths, key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return tuple(kept)


def library_paths(env: dict[str, str]) -> list[Path]:
    """Folders named by LD_LIBRARY_PATH and CUDA_HOME/CUDA_PATH (CUDA toolkits outside /usr)."""
    named = env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    named += [env.get("CUDA_HOME", ""), env.get("CUDA_PATH", "")]
    return [Path(p).resolve() for p in named if p and os.path.isabs(p) and os.path.isdir(p)]


def gpu_device_nodes(gpu_numbers: list[int], dev: Path = Path("/dev")) -> list[str]:
    """The device nodes of the GPUs given (by minor number) and CUDA's control nodes, as present
    on this host. Any other GPU's node is left out, so CUDA_VISIBLE_DEVICES is not the only bar."""
    if not gpu_numbers:
        return []
    names = [f"nvidia{number}" for number in gpu_numbers] + list(GPU_CONTROL_NODES)
    return [str(dev / name) for name in names if (dev / name).exists()]


@dataclass
class SandboxLayout:
    """What one evaluation's sandbox shows of the host."""

    scratch: Path
    # Host paths shown read-only at the same place (files or folders).
    read_only: list[Path]
    # Folders of the worker's scratch directory shown read-only inside the tmpfs (model/,
    # dataset/: links to the cached files, which are in `read_only`).
    scratch_folders: list[Path]
    # The sandbox's own /etc/passwd, /etc/group and /etc/hosts, written by the worker.
    etc_files: dict[str, Path]
    scratch_bytes: int
    shm_bytes: int
    devices: list[str] = field(default_factory=list)
    gpu: bool = False

    def mounted(self) -> list[str]:
        """For the provenance: every host path the evaluation could see."""
        shown = [*SYSTEM_FOLDERS, *(f"/etc/{name}" for name in ETC_FILES), *SYS_FOLDERS]
        if self.gpu:
            shown += GPU_SYS_FOLDERS
        return [
            *(path for path in shown if os.path.lexists(path)),
            *(str(path) for path in self.read_only),
            *(str(path) for path in self.scratch_folders),
            *self.devices,
        ]


def bwrap_arguments(
    bwrap: str,
    layout: SandboxLayout,
    env: dict[str, str],
    command: list[str],
    *,
    seccomp_fd: int | None,
) -> list[str]:
    arguments = [
        bwrap, *NAMESPACE_OPTIONS, "--disable-userns", "--hostname", SANDBOX_HOSTNAME,
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
    ]  # fmt: skip
    for name, value in env.items():
        arguments += ["--setenv", name, value]
    for folder in SYSTEM_FOLDERS:
        if os.path.islink(folder):
            arguments += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            arguments += ["--ro-bind", folder, folder]
    for name in ETC_FILES:
        arguments += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name, source in layout.etc_files.items():
        arguments += ["--ro-bind", str(source), f"/etc/{name}"]
    for path in layout.read_only:
        arguments += ["--ro-bind", str(path), str(path)]
    arguments += ["--proc", "/proc", "--dev", "/dev"]
    arguments += ["--size", str(layout.shm_bytes), "--tmpfs", "/dev/shm"]  # noqa: S108
    for node in layout.devices:
        arguments += ["--dev-bind", node, node]
    for system in [*SYS_FOLDERS, *(GPU_SYS_FOLDERS if layout.gpu else ())]:
        arguments += ["--ro-bind-try", system, system]
    scratch = str(layout.scratch)
    arguments += ["--perms", "0700", "--size", str(layout.scratch_bytes), "--tmpfs", scratch]
    for shown in layout.scratch_folders:
        arguments += ["--ro-bind", str(shown), str(shown)]
    # The root bubblewrap builds is a tmpfs too: read-only, or it would be scratch beyond quota.
    arguments += ["--dir", f"{scratch}{os.sep}tmp", "--remount-ro", "/", "--chdir", scratch]
    if seccomp_fd is not None:
        arguments += ["--seccomp", str(seccomp_fd)]
    return [*arguments, "--", *command]


def etc_files(folder: Path, uid: int, gid: int, home: Path) -> dict[str, Path]:
    """The sandbox's passwd, group and hosts: its own user and loopback, nothing of the host."""
    contents = {
        "passwd": f"sandbox:x:{uid}:{gid}:evaluation:{home}:/bin/sh\n",
        "group": f"sandbox:x:{gid}:\n",
        "hosts": f"127.0.0.1 localhost {SANDBOX_HOSTNAME}\n::1 localhost\n",
    }
    written = {}
    for name, text in contents.items():
        path = folder / name
        path.write_text(text)
        written[name] = path
    return written
