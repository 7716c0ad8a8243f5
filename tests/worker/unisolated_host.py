"""`python -m tests.worker.unisolated_host TMP`: runs two smoke jobs through the real worker
path on a host where no namespace can be made (the process first loads a system-call filter
like Docker's default profile: no unshare, no clone into new namespaces), one untrusted and one
trusted, and prints what the node heard as JSON."""

import errno
import json
import sys
from pathlib import Path

import pyseccomp as seccomp

from tests.worker.recording_node import job_run
from worker.sandbox import hide_from_same_user, isolation_capability

# Looks for the result wherever a job could reach it: a file named on the sandbox's command line
# (renamed over), or an open descriptor of the sandbox's supervisor.
FORGE_PY = """
import glob, json, os
forged = json.dumps({
    "metrics": {"accuracy": 1.0},
    "provenance": {"evaluator_version": "9.9.9", "network": "isolated (forged)"},
})
named = set()
for cmdline in glob.glob("/proc/*/cmdline"):
    try:
        words = open(cmdline, "rb").read().decode(errors="replace").split("\\0")
    except OSError:
        continue
    named.update(word for word in words if "result" in word and word.startswith("/"))
for parent, _folders, files in os.walk(os.path.dirname(os.getcwd())):
    named.update(os.path.join(parent, name) for name in files if name == "result.json")
replaced = 0
for path in named:
    try:
        with open(path + ".forged", "w") as file:
            file.write(forged)
        os.rename(path + ".forged", path)
        replaced += 1
    except OSError as error:
        print(f"{path}: {error}")
for descriptor in glob.glob("/proc/*/fd/*"):
    try:
        if "result" in os.readlink(descriptor):
            with open(descriptor, "w") as file:
                file.write(forged)
            replaced += 1
    except OSError as error:
        print(f"{descriptor}: {error}")
json.dump({"honest": 1, "replaced": replaced}, open(os.environ["METRICS_FILE"], "w"))
"""
NAMESPACE_FLAGS = (0x10000000, 0x20000000, 0x40000000, 0x00020000, 0x08000000, 0x04000000)


def refuse_namespaces() -> None:
    program = seccomp.SyscallFilter(seccomp.ALLOW)
    denied = seccomp.ERRNO(errno.EPERM)
    program.add_rule(denied, "unshare")
    program.add_rule(denied, "setns")
    program.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS:
        program.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    program.load()


def main(tmp: Path) -> None:
    refuse_namespaces()
    hide_from_same_user()  # as `python -m worker run` does
    capability = isolation_capability()
    model = {"model.onnx": b"not loaded"}
    untrusted, untrusted_node = job_run(tmp / "untrusted", evaluator="smoke", model=model)
    untrusted.execute()
    trusted, trusted_node = job_run(
        tmp / "trusted", evaluator="smoke", model=model, terms={"trusted": True}
    )
    trusted.execute()
    forging, forging_node = job_run(
        tmp / "forging",
        evaluator="command",
        model=model,
        dataset={"attack.py": FORGE_PY.encode()},
        config={"script": "attack.py"},
        terms={"trusted": True},
    )
    forging.execute()
    print(
        json.dumps(
            {
                "capability": capability,
                "untrusted": untrusted_node.outcomes,
                "untrusted_downloads": len(untrusted_node.downloads),
                "trusted": trusted_node.outcomes,
                "trusted_isolation": trusted_node.provenance.get("isolation"),
                "forged": forging_node.outcomes,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
