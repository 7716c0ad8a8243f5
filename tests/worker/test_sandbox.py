"""The evaluation sandbox with real subprocesses: scripts from a benchmark's dataset run through
the command evaluator in a claimed attempt, and the worker's limits hold them."""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import processes_with, sleep_marker, wait_for
from tests.worker.recording_node import RecordingNode, job_run, probe_spec
from worker import sandbox
from worker.evaluation import EvaluationError

MODEL_BYTES = b"ONNX stand-in: the command evaluator never loads it"


def _command_run(tmp_path, script_name, script, *, args=(), **limits):
    return job_run(
        tmp_path,
        evaluator="command",
        model={"model.onnx": MODEL_BYTES},
        formats={"model.onnx": "onnx"},
        dataset={script_name: script.encode(), "labels.csv": b"id,label\n1,cat\n"},
        config={"script": script_name, "args": [str(arg) for arg in args]},
        **limits,
    )


SCORE_PY = """
import json, os, sys
config = json.loads(os.environ["BENCHMARK_CONFIG"])
models = sorted(os.listdir(os.environ["MODEL_DIR"]))
rows = open(os.path.join(os.environ["DATASET_DIR"], "labels.csv")).read().splitlines()[1:]
print(f"scoring {models} on {len(rows)} rows with {config['args']}")
with open(os.environ["METRICS_FILE"], "w") as metrics:
    json.dump({"rows": len(rows), "threshold": float(sys.argv[2]), "models": len(models)}, metrics)
"""


def test_a_benchmark_script_runs_and_its_metrics_file_is_the_result(tmp_path):
    run, node = _command_run(tmp_path, "score.py", SCORE_PY, args=["--threshold", 0.25])

    assert run.execute() == "succeeded", node.outcomes
    assert node.outcomes == [("succeeded", {"rows": 1, "threshold": 0.25, "models": 1})]
    assert "scoring ['model.onnx'] on 1 rows with ['--threshold', '0.25']" in node.log
    provenance = node.provenance
    assert provenance["evaluator"] == "command" and provenance["evaluator_version"]
    assert provenance["packages"] == {}
    assert provenance["network"]
    assert set(provenance["dataset_files"]) == {"score.py", "labels.csv"}


@pytest.mark.parametrize(
    ("script_name", "script", "reason"),
    [
        (
            "fail.sh",
            "echo 'no GPU found' >&2\nexit 3\n",
            "The script fail.sh exited with code 3: its output is in the log.",
        ),
        (
            "silent.py",
            "print('done')\n",
            "The script silent.py wrote no metrics: it must write JSON {name: number} to the "
            "file named by METRICS_FILE.",
        ),
        (
            "words.py",
            "import json, os\n"
            "json.dump({'accuracy': 'high'}, open(os.environ['METRICS_FILE'], 'w'))\n",
            "The metrics the script words.py wrote: Metric 'accuracy' is not a number: 'high'.",
        ),
        (
            "broken.sh",
            'echo "accuracy: 0.9" > "$METRICS_FILE"\n',
            "The metrics the script broken.sh wrote are not JSON: Expecting value: line 1 "
            "column 1 (char 0).",
        ),
        (
            "flood.py",
            "import json, os\n"
            "json.dump({f'm{n}': n for n in range(5000)}, open(os.environ['METRICS_FILE'], 'w'))\n",
            "The metrics the script flood.py wrote: The evaluator returned 5000 metrics: at most "
            "1000.",
        ),
        (
            "score.rb",
            "puts 1\n",
            "The script 'score.rb' is neither Python (.py) nor shell (.sh): the command "
            "evaluator runs only those.",
        ),
    ],
)
def test_a_script_that_fails_or_reports_no_usable_metrics_fails_the_job(
    tmp_path, script_name, script, reason
):
    run, node = _command_run(tmp_path, script_name, script)

    assert run.execute() == "failed"
    assert node.outcomes == [("failed", reason)]


HANG_PY = """
import subprocess, sys, time
inside = subprocess.Popen(["sleep", sys.argv[1]])
outside = subprocess.Popen(["sleep", sys.argv[1]], start_new_session=True)
print("started two sleepers", flush=True)
time.sleep(300)
"""


def test_a_script_past_its_time_limit_is_killed_with_every_process_it_started(tmp_path):
    marker = sleep_marker()
    run, node = _command_run(tmp_path, "hang.py", HANG_PY, args=[marker], time_limit_seconds=2)
    started = time.monotonic()

    assert run.execute() == "timed_out"
    assert time.monotonic() - started < 8
    assert node.outcomes == [("timed_out", "Ran past its time limit of 2 seconds.")]
    # The script, a child in its group, and one that left the group with a session of its own.
    assert "started two sleepers" in node.log
    assert wait_for(lambda: not processes_with(marker), timeout=5), processes_with(marker)


def test_what_a_finished_script_left_running_is_killed_with_it(tmp_path):
    marker = sleep_marker()
    script = 'sleep "$1" &\necho "left $!"\necho \'{"done": 1}\' > "$METRICS_FILE"\n'
    run, node = _command_run(tmp_path, "leave.sh", script, args=[marker])

    assert run.execute() == "succeeded", node.outcomes
    assert "left " in node.log
    assert wait_for(lambda: not processes_with(marker), timeout=5), processes_with(marker)


HOG_PY = """
import time
block = b"x" * (400 * 1024 * 1024)
print("allocated", flush=True)
time.sleep(60)
"""


def test_a_script_over_the_memory_limit_is_stopped_and_fails_with_the_figures(tmp_path):
    run, node = _command_run(tmp_path, "hog.py", HOG_PY, memory_limit_mb=128)
    started = time.monotonic()

    assert run.execute() == "failed"
    assert time.monotonic() - started < 30
    [(_, reason)] = node.outcomes
    match = re.fullmatch(
        r"Used (\d+) MiB of memory, over the benchmark's limit of 128 MiB: stopped\.", reason
    )
    assert match, reason
    assert int(match.group(1)) >= 128


CONNECT_PY = """
import json, os, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    connected = 1
except OSError as error:
    print(f"connection refused here: {error}")
    connected = 0
json.dump({"connected": connected}, open(os.environ["METRICS_FILE"], "w"))
"""


def _host_allows_a_network_namespace() -> bool:
    probe = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None)\n"
        "sys.exit(0 if libc.unshare(0x10000000 | 0x40000000) == 0 or libc.unshare(0x40000000) == 0"
        " else 1)"
    )
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_a_script_cannot_reach_a_server_on_the_host_where_the_network_is_isolated(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        run, node = _command_run(tmp_path, "connect.py", CONNECT_PY, args=[port])

        assert run.execute() == "succeeded", node.outcomes
        server.setblocking(False)
        network = node.provenance["network"]
        if _host_allows_a_network_namespace():
            assert network.startswith("isolated ("), network
            assert node.outcomes == [("succeeded", {"connected": 0})]
            with pytest.raises(BlockingIOError):
                server.accept()
        else:
            assert re.fullmatch(r"not isolated: .+\(.+\).*", network), network


ENV_PY = """
import json, os
# The log is the one way out of the sandbox, beside the metrics.
print("SEEN " + json.dumps({"environ": dict(os.environ), "cwd": os.getcwd()}))
json.dump({"variables": len(os.environ)}, open(os.environ["METRICS_FILE"], "w"))
"""


def _seen(log: str) -> dict:
    [line] = [line for line in log.splitlines() if line.startswith("SEEN ")]
    return json.loads(line.removeprefix("SEEN "))


def test_a_script_sees_none_of_the_workers_settings_and_lives_in_its_scratch(tmp_path, monkeypatch):
    settings = {
        "WORKER_NODE_TOKEN": "rxn_secret-node-token",
        "WORKER_BROKER_URL": "redis://:broker-password@10.0.0.5:6379/0",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "NVIDIA_API_KEY": "nvapi-secret-value",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    run, node = _command_run(tmp_path, "env.py", ENV_PY)

    assert run.execute() == "succeeded", node.outcomes
    seen = _seen(node.log)
    environ, scratch = seen["environ"], seen["cwd"]
    assert not set(settings) & set(environ)
    assert not any(value in text for value in settings.values() for text in environ.values())
    assert environ["HOME"] == scratch and Path(scratch).name.startswith("job-9-attempt-1-")
    for name in ("TMPDIR", "HF_HOME", "METRICS_FILE", "MODEL_DIR", "DATASET_DIR"):
        assert environ[name].startswith(scratch + "/"), name
    assert environ["HF_HUB_OFFLINE"] == environ["HF_DATASETS_OFFLINE"] == "1"
    assert environ["CUDA_VISIBLE_DEVICES"] == ""
    assert not Path(scratch).exists()


WAIT_SH = """
sleep "$1" &
wait
"""


def test_cancelling_stops_a_running_script_within_seconds(tmp_path):
    marker = sleep_marker()
    run, node = _command_run(tmp_path, "wait.sh", WAIT_SH, args=[marker])
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(run.execute()))
    thread.start()
    assert wait_for(lambda: processes_with(marker), timeout=20)

    run.stop.set()
    cancelled_at = time.monotonic()
    thread.join(timeout=10)

    assert outcome == ["stopped"]
    assert time.monotonic() - cancelled_at < 4
    assert node.outcomes == []
    assert wait_for(lambda: not processes_with(marker), timeout=5), processes_with(marker)


def test_a_model_with_pickle_files_is_refused_before_anything_is_fetched(tmp_path):
    run, node = job_run(
        tmp_path,
        evaluator="smoke",
        model={"config.json": b"{}", "pytorch_model.bin": b"\x80\x04 pickled weights"},
        formats={"config.json": "json", "pytorch_model.bin": "pickle"},
    )

    assert run.execute() == "failed"
    [(_, reason)] = node.outcomes
    assert reason.startswith("Refusing the model file(s) pytorch_model.bin: pickle files run code")
    assert node.downloads == []
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))


DOUBLE_FORK_PY = """
import json, os, subprocess, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", sys.argv[1]])
    os._exit(0)
os.wait()
print("daemon started", flush=True)
json.dump({"done": 1}, open(os.environ["METRICS_FILE"], "w"))
"""


def test_a_process_that_double_forked_away_ends_with_the_evaluation(tmp_path):
    marker = sleep_marker()
    run, node = _command_run(tmp_path, "daemon.py", DOUBLE_FORK_PY, args=[marker])

    assert run.execute() == "succeeded", node.outcomes
    assert "daemon started" in node.log
    assert wait_for(lambda: not processes_with(marker), timeout=5), (
        "the daemon outlived its evaluation"
    )


FIFO_PY = """
import os, signal
parent = os.getppid()
arguments = open(f"/proc/{parent}/cmdline", "rb").read().split(b"\\0")
result_path = arguments[-2].decode()
os.mkfifo(result_path)
os.kill(parent, signal.SIGKILL)
"""


def test_a_script_that_replaces_the_result_file_cannot_block_the_worker(tmp_path):
    run, _node = _command_run(tmp_path, "fifo.py", FIFO_PY, time_limit_seconds=5)
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(run.execute()), daemon=True)
    thread.start()
    thread.join(timeout=30)

    assert outcome == ["failed"], "the attempt never ended"


@pytest.mark.parametrize(
    ("written", "refusal"),
    [
        (b"", "exited with code 0 before it reported a result"),
        (b" " * (sandbox.MAX_RESULT_BYTES + 1), "larger than any result"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a result"),
    ],
)
def test_the_worker_reads_the_result_descriptor_without_trusting_it(written, refusal):
    descriptor = os.memfd_create("result")
    try:
        os.write(descriptor, written)
        with pytest.raises(EvaluationError) as refused:
            sandbox._read_result(descriptor, 0)
    finally:
        os.close(descriptor)
    assert refusal in str(refused.value)


TAMPER_PY = """
import json, os
path = os.path.join(os.environ["MODEL_DIR"], "model.onnx")
try:
    os.chmod(os.path.realpath(path), 0o644)
    with open(path, "r+b") as model:
        model.write(b"POISON")
    written = 1
except OSError as error:
    print("cannot write the model:", error)
    written = 0
cache = os.path.dirname(os.path.dirname(os.path.realpath(path)))
metrics = {"written": written, "cached_files": sum(len(files) for *_, files in os.walk(cache))}
json.dump(metrics, open(os.environ["METRICS_FILE"], "w"))
"""


def test_a_job_sees_only_its_own_cached_files_and_cannot_change_them(tmp_path):
    from worker.file_cache import FileCache

    other = FileCache(tmp_path / "cache")
    other_node = RecordingNode({hashlib.sha256(b"another model").hexdigest(): b"another model"})
    other.fetch(other_node, url="", sha256=hashlib.sha256(b"another model").hexdigest(), size=13)
    run, node = _command_run(tmp_path, "tamper.py", TAMPER_PY)

    assert run.execute() == "succeeded", node.outcomes
    cached = run.cache.path_for(hashlib.sha256(MODEL_BYTES).hexdigest())
    if node.provenance["files"].startswith("only this job's files"):
        [(_, metrics)] = node.outcomes
        # This job's three files (model, script, labels), not the other model.
        assert metrics == {"written": 0, "cached_files": 3}
        assert cached.read_bytes() == MODEL_BYTES
    else:
        assert node.provenance["files"].startswith("not isolated: ")


def test_the_cache_fetches_again_a_file_changed_since_it_was_verified(tmp_path):
    from worker.file_cache import FileCache

    digest = hashlib.sha256(MODEL_BYTES).hexdigest()
    node = RecordingNode({digest: MODEL_BYTES})
    cache = FileCache(tmp_path / "cache")
    cached = cache.fetch(node, url="", sha256=digest, size=len(MODEL_BYTES))
    assert cached.stat().st_mode & 0o222 == 0  # read-only
    cached.chmod(0o644)
    cached.write_bytes(b"POISON" + MODEL_BYTES[6:])  # same size: only the content differs

    assert cache.fetch(node, url="", sha256=digest, size=len(MODEL_BYTES)) == cached
    assert node.downloads == [digest, digest]
    assert cached.read_bytes() == MODEL_BYTES
    assert cache.fetch(node, url="", sha256=digest, size=len(MODEL_BYTES)) == cached
    assert node.downloads == [digest, digest]  # verified once, then trusted


def test_the_worker_process_makes_itself_unreadable_to_processes_of_its_user():
    # PR_GET_DUMPABLE (3): 0 means /proc/<pid>/environ, mem and fd need CAP_SYS_PTRACE.
    probe = (
        "import ctypes\n"
        "from worker import sandbox\n"
        "libc = ctypes.CDLL(None)\n"
        "before = libc.prctl(3, 0, 0, 0, 0)\n"
        "sandbox.hide_from_same_user()\n"
        "print(before, libc.prctl(3, 0, 0, 0, 0))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["1", "0"]


def test_evaluation_code_cannot_undo_its_isolation(tmp_path):
    outside = tmp_path / "outside.txt"
    run, node = job_run(
        tmp_path,
        evaluator="probe",
        specs={"probe": probe_spec("tests.worker.probe_evaluators:escape")},
        model={"model.onnx": MODEL_BYTES},
        formats={"model.onnx": "onnx"},
        config={"outside": str(outside), "host_pid": os.getpid()},
    )

    assert run.execute() == "succeeded", node.outcomes
    [(_, tried)] = node.outcomes
    provenance = node.provenance
    if provenance["isolation"]["level"] == "full":
        assert tried["unmounted"] == 0 and tried["wrote_outside"] == 0
        assert not outside.exists()
    else:
        assert provenance["isolation"]["level"] in ("partial", "none")
    if provenance["processes"] == "own PID namespace":
        assert tried["signalled_host"] == 0
    assert tried["capabilities"] == 0
