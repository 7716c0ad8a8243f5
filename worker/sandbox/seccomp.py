"""The system-call filter every bubblewrap sandbox runs under, compiled once per worker process
with libseccomp (through pyseccomp) and handed to bubblewrap as a BPF program (`--seccomp FD`).

It allows what evaluations do (files, threads, sockets of their own namespace, CUDA's ioctls)
and refuses, with EPERM, what only an escape or an attack on the host needs: tracing other
processes, mounting, new namespaces, kernel keyrings, BPF, perf events, userfaultfd, io_uring,
module loading, and pushing input into a terminal. Calls from another architecture's ABI
(32-bit x86 on x86-64) are killed: libseccomp's default for a foreign architecture.
"""

import errno
import os
from functools import cache

DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr", "unshare", "setns",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup", "uselib",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "iopl", "ioperm",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "fanotify_init", "nfsservctl",
)  # fmt: skip
CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


@cache
def seccomp_program() -> tuple[bytes, str]:
    """The compiled filter, and a sentence for the provenance. An empty program (with the
    reason) where libseccomp or its binding is missing."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as error:
        return b"", f"no system-call filter: libseccomp unavailable ({error})"
    denied = seccomp.ERRNO(errno.EPERM)
    program = seccomp.SyscallFilter(seccomp.ALLOW)
    names = []
    for name in DENIED_SYSCALLS:
        try:
            program.add_rule(denied, name)
        except (OSError, ValueError):
            continue  # not a system call of this architecture
        names.append(name)
    # glibc falls back to clone() when clone3 is missing; clone()'s flags can be checked.
    program.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    program.add_rule(
        denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    )
    for request in (TIOCSTI, TIOCLINUX):
        program.add_rule(denied, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    descriptor = os.memfd_create("seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(descriptor), "wb") as file:
            program.export_bpf(file)
        size = os.lseek(descriptor, 0, os.SEEK_END)
        compiled = os.pread(descriptor, size, 0)
    finally:
        os.close(descriptor)
    return compiled, (
        f"seccomp: {len(names)} system calls refused ({', '.join(names[:8])}, ...), new user "
        "namespaces and terminal input injection refused, foreign ABIs killed"
    )


def program_descriptor(program: bytes) -> int:
    """A fresh descriptor to read the program from (bubblewrap reads it to its end)."""
    descriptor = os.memfd_create("seccomp", 0)
    os.write(descriptor, program)
    os.lseek(descriptor, 0, os.SEEK_SET)
    return descriptor
