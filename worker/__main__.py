"""`python -m worker COMMAND`: the GPU worker's entry point.

inventory   print the GPUs (through NVML) or CPUs this host offers, as JSON
check       check the worker's settings and that its broker and node answer
"""

import argparse
import json
import sys

from worker import inventory
from worker.checks import run_checks
from worker.settings import SettingsError, WorkerSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("inventory", help="print this host's GPUs (or CPUs) as JSON")
    check = commands.add_parser("check", help="check the settings, the broker and the node")
    check.add_argument("--broker-url", help="broker URL (or WORKER_BROKER_URL)")
    check.add_argument("--node-url", help="the node's base URL (or WORKER_NODE_URL)")
    check.add_argument("--node-token", help="this worker's node token (or WORKER_NODE_TOKEN)")
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
    results = run_checks(settings)
    for name, passed, detail in results:
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    return 0 if all(passed for _name, passed, _detail in results) else 1


if __name__ == "__main__":
    sys.exit(main())
