"""Attacks on the evaluation sandbox from inside, as a malicious benchmark or model author would
make them, through the worker's real path (`JobRun` → `python -m worker.sandbox`)."""

import ctypes
import json
import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from apps.evaluations.samples.tiny_lm import build_tiny_lm, build_tiny_tasks
from tests.worker.recording_node import job_run
from tests.worker.unisolated_host import FORGE_PY
from worker.evaluators import evaluator_specs
from worker.sandbox import FULL, SandboxLimits
from worker.sandbox.bwrap import SandboxLayout, bwrap_arguments, gpu_device_nodes

MODEL_BYTES = b"ONNX stand-in: the command evaluator never loads it"
REPO = Path(__file__).resolve().parents[2]


def _script_run(tmp_path, script: str, *, args=(), **options):
    return job_run(
        tmp_path,
        evaluator="command",
        model={"model.onnx": MODEL_BYTES},
        formats={"model.onnx": "onnx"},
        dataset={"attack.py": script.encode()},
        config={"script": "attack.py", "args": [str(arg) for arg in args]},
        **options,
    )


def _metrics(node) -> dict:
    [(state, metrics)] = node.outcomes
    assert state == "succeeded", metrics
    return metrics


READ_PY = """
import json, os, sys
readable = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as file:
            file.read(1)
        readable[path] = 1
    except OSError:
        readable[path] = 0
print("READ " + json.dumps(readable))
json.dump({"readable": sum(readable.values())}, open(os.environ["METRICS_FILE"], "w"))
"""


def test_a_job_reads_neither_the_nodes_secrets_nor_its_database_nor_the_hosts(
    tmp_path, monkeypatch
):
    # The demo's layout: a checkout on sys.path, with its node token and database in var/.
    checkout = tmp_path / "checkout"
    (checkout / "demo_package").mkdir(parents=True)
    (checkout / "demo_package" / "__init__.py").write_text("")
    (checkout / "var").mkdir()
    token = checkout / "var" / "demo-worker.env"
    token.write_text("WORKER_NODE_TOKEN=rxn_secret\n")
    database = checkout / "var" / "db.sqlite3"
    database.write_bytes(b"SQLite format 3\x00")
    monkeypatch.syspath_prepend(str(checkout))
    targets = [token, database, "/etc/shadow", REPO / "var", Path.home(), "/root/.bash_history"]
    # The demo worker keeps its file cache and scratch folders in var/worker/ too.
    run, node = _script_run(checkout / "var" / "worker", READ_PY, args=targets)

    assert run.execute() == "succeeded", node.outcomes
    assert _metrics(node) == {"readable": 0}, node.log
    assert node.provenance["isolation"]["level"] == FULL
    assert str(token) not in node.provenance["isolation"]["mounted"]


SOCKET_PY = """
import json, os, socket, sys
reached = 0
for path in sys.argv[1:]:
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(2)
            client.connect(path)
        reached += 1
    except OSError as error:
        print(f"{path}: {error}")
interfaces = os.listdir("/sys/class/net") if os.path.isdir("/sys/class/net") else []
json.dump({"reached": reached, "interfaces": len(interfaces)},
          open(os.environ["METRICS_FILE"], "w"))
"""


def test_a_job_cannot_connect_to_a_servers_socket_on_the_file_system(tmp_path):
    sockets = tmp_path / "run" / "postgresql"
    sockets.mkdir(parents=True)
    path = sockets / ".s.PGSQL.5432"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        server.setblocking(False)
        run, node = _script_run(tmp_path, SOCKET_PY, args=[path])

        assert run.execute() == "succeeded", node.outcomes
        assert _metrics(node) == {"reached": 0, "interfaces": 0}, node.log
        with pytest.raises(BlockingIOError):
            server.accept()


SYSV_PY = """
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
key = int(sys.argv[1])
IPC_CREAT = 0o1000
segment = libc.shmget(key, 8 * 1024 * 1024, IPC_CREAT | 0o600)
queue = libc.msgget(key, IPC_CREAT | 0o600)
json.dump({"segment": int(segment >= 0), "queue": int(queue >= 0)},
          open(os.environ["METRICS_FILE"], "w"))
"""


def _sysv_keys(kind: str) -> set[int]:
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines}


def test_shared_memory_and_message_queues_a_job_made_end_with_it(tmp_path):
    key = int.from_bytes(os.urandom(3), "big") + 1
    run, node = _script_run(tmp_path, SYSV_PY, args=[key])
    try:
        assert run.execute() == "succeeded", node.outcomes
        assert _metrics(node) == {"segment": 1, "queue": 1}
        assert key not in _sysv_keys("shm") and key not in _sysv_keys("msg")
    finally:
        libc = ctypes.CDLL(None)
        for remove in (["ipcrm", "-M", str(key)], ["ipcrm", "-Q", str(key)]):
            subprocess.run(remove, capture_output=True, check=False)
        del libc


MEMORY_PY = """
import os, sys, time
chunk = b"x" * (16 * 1024 * 1024)
if sys.argv[1] == "memfd":
    descriptor = os.memfd_create("hoard")
    for _ in range(25):
        os.write(descriptor, chunk)
else:
    # Each under the limit on its own; together well over it.
    with open("/dev/shm/hoard", "wb") as file:
        for _ in range(6):
            file.write(chunk)
    held = bytearray(96 * 1024 * 1024)
time.sleep(1)
print("hoarded", flush=True)
open(os.environ["METRICS_FILE"], "w").write('{"hoarded": 1}')
"""


@pytest.mark.parametrize("where", ["memfd", "shm"])
def test_memory_a_job_hides_in_a_memfd_or_shared_memory_counts_against_its_limit(tmp_path, where):
    run, node = _script_run(tmp_path, MEMORY_PY, args=[where], memory_limit_mb=128)

    assert run.execute() == "failed"
    [(_, reason)] = node.outcomes
    assert "hoarded" not in node.log
    assert reason.endswith("over the benchmark's limit of 128 MiB: stopped."), reason


FORK_PY = """
import json, os, time
started = 0
for _ in range(100):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        started += 1
    except OSError as error:
        print(f"fork refused after {started}: {error}", flush=True)
        break
json.dump({"started": started}, open(os.environ["METRICS_FILE"], "w"))
"""


def test_a_job_cannot_start_more_processes_than_the_workers_limit(tmp_path):
    run, node = _script_run(tmp_path, FORK_PY, limits=SandboxLimits(pids=48))

    assert run.execute() == "failed"
    [(_, reason)] = node.outcomes
    assert reason.startswith("Tried to run more than 48 processes and threads at once"), reason
    assert "fork refused after" in node.log


FILL_PY = """
import json, os
written = 0
try:
    with open("filler", "wb") as file:
        for _ in range(64):
            file.write(b"x" * 1024 * 1024)
            file.flush()
            written += 1
except OSError as error:
    print(f"scratch full after {written} MiB: {error}", flush=True)
json.dump({"written_mib": written}, open(os.environ["METRICS_FILE"], "w"))
"""


def test_a_job_cannot_write_more_to_its_scratch_than_its_quota(tmp_path):
    run, node = _script_run(tmp_path, FILL_PY, limits=SandboxLimits(scratch_mb=16))

    assert run.execute() == "failed"
    assert node.outcomes == [
        ("failed", "Filled its scratch space, the worker's limit of 16 MiB: stopped.")
    ]
    assert "scratch full after" in node.log


def test_a_job_cannot_put_a_forged_result_in_place_of_its_own(tmp_path):
    run, node = _script_run(tmp_path, FORGE_PY)

    assert run.execute() == "succeeded", node.outcomes
    assert node.outcomes == [("succeeded", {"honest": 1, "replaced": 0})]
    assert node.provenance["evaluator_version"] == evaluator_specs()["command"].version
    assert node.provenance["network"].startswith("isolated (bubblewrap")


FORGING_TEMPLATE = (
    "{% set os = lipsum.__globals__.os %}"
    "{% for fd in os.listdir('/proc/self/fd') %}"
    "{% if 'result' in os.path.realpath('/proc/self/fd/' ~ fd) %}"
    "{{ os.write(fd | int, FORGED.encode()) }}{{ os._exit(0) }}"
    "{% endif %}{% endfor %}"
    "Question: {{question}}\nAnswer:"
)
FORGED = {
    "metrics": {"tiny_forge/acc": 1.0},
    "provenance": {"evaluator_version": "9.9.9", "packages": {"torch": "forged"}},
}


def test_an_lm_eval_task_cannot_forge_the_metrics_or_provenance_the_evaluation_reports(
    tmp_path,
):
    model = {path.name: path.read_bytes() for path in build_tiny_lm(tmp_path / "model")}
    tasks = {path.name: path.read_bytes() for path in build_tiny_tasks(tmp_path / "tasks")}
    template = FORGING_TEMPLATE.replace("FORGED", repr(json.dumps(FORGED)))
    tasks["tiny_forge.yaml"] = (
        "include: tiny_choice.yaml\ntask: tiny_forge\ndoc_to_text: " + json.dumps(template) + "\n"
    ).encode()
    run, node = job_run(
        tmp_path,
        evaluator="lm-eval",
        model=model,
        formats={"model.safetensors": "safetensors"},
        dataset=tasks,
        config={"tasks": ["tiny_forge"], "limit": 4, "bootstrap_iters": 0},
    )

    assert run.execute() == "succeeded", node.outcomes
    [(_, metrics)] = node.outcomes
    assert set(metrics) == {"tiny_forge/acc", "tiny_forge/acc_norm"}
    provenance = node.provenance
    assert provenance["evaluator_version"] == evaluator_specs()["lm-eval"].version
    assert provenance["packages"]["torch"] == version("torch")
    assert provenance["isolation"]["level"] == FULL


def test_the_sandbox_shows_only_the_device_nodes_of_the_gpus_the_job_was_given(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-modeset"):
        (dev / name).touch()
    run, _node = job_run(tmp_path, evaluator="smoke", model={"m.onnx": MODEL_BYTES})
    run.gpu_indices = [0]
    run.inventory = run.inventory.__class__(
        cpu_count=2,
        memory_bytes=1,
        gpus=[
            run_gpu(index=0, minor_number=2),
            run_gpu(index=1, minor_number=0),
        ],
    )
    nodes = gpu_device_nodes(run._gpu_numbers(), dev)
    layout = SandboxLayout(
        scratch=tmp_path / "scratch",
        read_only=[],
        scratch_folders=[],
        etc_files={},
        scratch_bytes=1 << 20,
        shm_bytes=1 << 20,
        devices=nodes,
        gpu=True,
    )
    arguments = bwrap_arguments("bwrap", layout, {}, ["true"], seccomp_fd=None)

    bound = [arguments[i + 1] for i, word in enumerate(arguments) if word == "--dev-bind"]
    assert bound == [
        str(dev / name) for name in ("nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-modeset")
    ]
    assert arguments.index("--dev") < arguments.index("--dev-bind")
    assert "/dev" not in [arguments[i + 1] for i, w in enumerate(arguments) if w == "--dev-bind"]
    assert gpu_device_nodes([], dev) == []


def run_gpu(*, index: int, minor_number: int):
    from worker.inventory import Gpu

    return Gpu(
        index=index, uuid=f"GPU-{index}", name="H200", memory_bytes=1, minor_number=minor_number
    )


def test_a_worker_that_cannot_isolate_refuses_untrusted_jobs_and_says_why(tmp_path):
    # A host where neither bubblewrap nor the fallback gets a namespace (Docker's default
    # seccomp profile, hosts without user namespaces): the real worker path, under a filter.
    probe = subprocess.run(
        [sys.executable, "-m", "tests.worker.unisolated_host", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])

    assert seen["capability"]["level"] == "none"
    [(state, reason)] = seen["untrusted"]
    assert state == "failed"
    assert reason.startswith("This worker cannot fully isolate evaluations ("), reason
    assert seen["untrusted_downloads"] == 0
    [(state, _metrics)] = seen["trusted"]
    assert state == "succeeded"
    assert seen["trusted_isolation"]["level"] == "none"
    # Even unisolated, the result is not the evaluation's to replace.
    assert seen["forged"] == [["succeeded", {"honest": 1, "replaced": 0}]]
