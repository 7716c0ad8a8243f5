"""`python -m worker COMMAND`: the GPU worker's entry point.

inventory   print the GPUs (through NVML) or CPUs this host offers, as JSON
check       check the worker's settings and that its broker and node answer
run         register with the node and run the jobs it sends (SIGTERM finishes running jobs)
"""

import argparse
import json
import sys
from pathlib import Path

from worker import inventory
from worker.checks import run_checks
from worker.file_cache import DEFAULT_MAX_BYTES
from worker.sandbox import DEFAULT_PIDS_LIMIT, DEFAULT_SCRATCH_MB, SandboxLimits
from worker.settings import SettingsError, WorkerSettings


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _add_settings(command: argparse.ArgumentParser) -> None:
    command.add_argument("--broker-url", help="broker URL (or WORKER_BROKER_URL)")
    command.add_argument("--node-url", help="the node's base URL (or WORKER_NODE_URL)")
    command.add_argument(
        "--node-token",
        help="this worker's node token; prefer WORKER_NODE_TOKEN: a command line is visible to "
        "every process of the host",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("inventory", help="print this host's GPUs (or CPUs) as JSON")
    _add_settings(commands.add_parser("check", help="check the settings, the broker and the node"))
    run = commands.add_parser("run", help="register with the node and run the jobs it sends")
    _add_settings(run)
    run.add_argument(
        "--concurrency", type=_positive, help="jobs at once (default: GPUs + CPU slots)"
    )
    run.add_argument(
        "--cpu-slots",
        type=int,
        help="jobs without a GPU this host runs at once (default: 1 on a GPU host, "
        "else half the cores, at most 4)",
    )
    run.add_argument(
        "--cache-dir",
        type=Path,
        help="where fetched model and dataset files are kept "
        "(default: ~/.cache/research-exchange-worker/files)",
    )
    run.add_argument(
        "--cache-max-bytes",
        type=_positive,
        default=DEFAULT_MAX_BYTES,
        help="evict the least recently used files above this size (default: 20 GiB)",
    )
    run.add_argument(
        "--scratch-dir", type=Path, help="where each attempt gets a fresh working directory"
    )
    run.add_argument(
        "--pids-limit",
        type=_positive,
        default=DEFAULT_PIDS_LIMIT,
        help="processes and threads one evaluation may run at once (default: 1024, or 8 per "
        "core on larger hosts; needs a cgroup, see --cgroup)",
    )
    run.add_argument(
        "--scratch-max-mb",
        type=_positive,
        default=DEFAULT_SCRATCH_MB,
        help="size of each evaluation's scratch tmpfs, counted in its memory (default: 10240)",
    )
    run.add_argument(
        "--cgroup",
        type=Path,
        help="a cgroup v2 folder delegated to the worker (memory and pids in its "
        "cgroup.subtree_control) for the evaluations' kernel-enforced limits (default: the "
        "worker's own cgroup, or cgroup v1 where the worker may write it)",
    )
    run.add_argument("--loglevel", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "inventory":
        print(json.dumps(inventory.discover().as_dict(), indent=2))
        return 0
    try:
        settings = WorkerSettings.load(
            broker_url=args.broker_url, node_url=args.node_url, node_token=args.node_token
        )
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "run":
        from worker.consumer import RunOptions, run

        if args.cpu_slots is not None and args.cpu_slots < 0:
            print("error: --cpu-slots must not be negative", file=sys.stderr)
            return 2
        return run(
            settings,
            RunOptions(
                concurrency=args.concurrency,
                cpu_slots=args.cpu_slots,
                cache_dir=args.cache_dir,
                cache_max_bytes=args.cache_max_bytes,
                scratch_dir=args.scratch_dir,
                loglevel=args.loglevel,
                limits=SandboxLimits(
                    pids=args.pids_limit, scratch_mb=args.scratch_max_mb, cgroup=args.cgroup
                ),
            ),
        )
    results = run_checks(settings)
    for name, passed, detail in results:
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    return 0 if all(passed for _name, passed, _detail in results) else 1


if __name__ == "__main__":
    sys.exit(main())
