"""Load test of the catalogue API against a bare Django view, in one gunicorn, in one run.

    .venv/bin/python bench/seed_catalog.py      # once: 100,000 papers, 20,000 models
    .venv/bin/python bench/catalog_load.py      # about 2.5 minutes; stops by itself

Starts gunicorn on a free 127.0.0.1 port with bench.settings, then drives it from a thread pool
at fixed concurrency, each thread on its own persistent HTTP/1.1 connection (closed loop: a
thread sends its next request when the previous answer is read). Scenarios run in interleaved
rounds (every scenario once per round, in rotating order), so drift on the machine touches them
all alike. Prints a table and writes bench/results/catalog-<date>.json.
"""

import argparse
import http.client
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.accounts.services import api_token_create, api_token_revoke  # noqa: E402
from apps.catalog.models import Paper, ResearchModel  # noqa: E402
from apps.catalog.selectors import visible_to  # noqa: E402
from bench.seed_catalog import READER_USERNAME, codename, vocabulary  # noqa: E402

RESULTS = REPO / "bench" / "results"
LIST_PAGES = 200

NextPath = Callable[[random.Random], tuple[str, str]]


def search_queries() -> dict[str, list[str]]:
    """Terms by how many papers they hit (measured on the default seed; the run records the
    counts again): rare < 1 %, medium 1-20 %, common > 40 % of 100,000 papers."""
    words = vocabulary()
    return {
        "rare": [codename(7), codename(12345), words[3000], words[6000]],
        "medium": ["diffusion", "protein", "graph attention", words[1000]],
        "common": ["model", "neural network", "transformer", "training data"],
    }


@dataclass
class Scenario:
    name: str
    endpoint: str
    identity: str
    next_path: NextPath
    latencies: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_wall_seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


def _choice_path(options: list[tuple[str, str]]) -> NextPath:
    return lambda rng: rng.choice(options)


def scenarios_build(*, token_user: User) -> list[Scenario]:
    public_models = list(
        ResearchModel.objects.filter(visible_to(AnonymousUser())).values_list("id", flat=True)
    )
    reader_models = list(
        ResearchModel.objects.filter(visible_to(token_user)).values_list("id", flat=True)
    )
    pages = [(f"/api/v1/papers/?page={page}", "") for page in range(1, LIST_PAGES + 1)]
    searches = [
        (f"/api/v1/search/?q={urllib.request.quote(query)}", kind)
        for kind, queries in search_queries().items()
        for query in queries
    ]
    scenarios = [Scenario("bare", "/bench/bare", "anonymous", lambda rng: ("/bench/bare", ""))]
    for identity, model_ids in (("anonymous", public_models), ("token", reader_models)):
        scenarios += [
            Scenario(
                f"papers/{identity}", "/api/v1/papers/?page=1..200", identity, _choice_path(pages)
            ),
            Scenario(
                f"search/{identity}", "/api/v1/search/?q=...", identity, _choice_path(searches)
            ),
            Scenario(
                f"model/{identity}",
                "/api/v1/models/{id}/",
                identity,
                lambda rng, ids=model_ids: (f"/api/v1/models/{rng.choice(ids)}/", ""),
            ),
        ]
    return scenarios


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime per process; one that has just exited is left out (reading it as zero
    would subtract everything it used before)."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _database_backends(database: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and f" {database} " in title:
                found.append(int(entry.name))
    return found


def _machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot, from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


CpuSnapshot = dict[str, dict[int, float]]


def cpu_snapshot(server_pid: int) -> CpuSnapshot:
    """CPU seconds used so far, per process: this client, gunicorn (master and workers), the
    bench database's backends, and the whole machine (pid 0). PostgreSQL's short-lived parallel
    workers are no backend of the database: they count in the machine's figure only."""
    backends = _database_backends(settings.DATABASES["default"]["NAME"])
    return {
        "client": {0: time.process_time()},
        "gunicorn": _cpu_seconds([server_pid, *_children(server_pid)]),
        "postgres": _cpu_seconds(backends),
        "machine": {0: _machine_busy_seconds()},
    }


def cpu_used(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """Per group, the CPU seconds between two snapshots. Django reconnects after CONN_MAX_AGE:
    a backend that started in between counts from zero, one that ended is not counted."""
    return {
        group: sum(value - before[group].get(pid, 0.0) for pid, value in processes.items())
        for group, processes in after.items()
    }


def _client(
    port: int,
    headers: dict[str, str],
    scenario: Scenario,
    rng: random.Random,
    start: threading.Barrier,
    deadline: list[float],
) -> None:
    http_connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start.wait()
    while time.perf_counter() < deadline[0]:
        path, label = scenario.next_path(rng)
        sent = time.perf_counter()
        try:
            http_connection.request("GET", path, headers=headers)
            response = http_connection.getresponse()
            response.read()
            problem = "" if response.status == 200 else f"{response.status} {path}"
        except (http.client.HTTPException, OSError) as error:
            http_connection.close()
            problem = f"{type(error).__name__} {path}"
        done = time.perf_counter()
        # Only answers that arrive within the segment count, as in wrk.
        if done <= deadline[0]:
            scenario.latencies.append(done - sent)
            scenario.labels.append(label)
            if problem:
                scenario.errors.append(problem)
    http_connection.close()


def segment_run(
    *,
    port: int,
    scenario: Scenario,
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    seed: int,
    server_pid: int,
    record: bool,
) -> None:
    target = scenario if record else Scenario(scenario.name, "", "", scenario.next_path)
    start = threading.Barrier(concurrency + 1)
    deadline = [math.inf]
    rngs = [random.Random(seed * 1000 + n) for n in range(concurrency)]  # noqa: S311
    threads = [
        threading.Thread(
            target=_client, args=(port, headers, target, rng, start, deadline), daemon=True
        )
        for rng in rngs
    ]
    for thread in threads:
        thread.start()
    before = cpu_snapshot(server_pid)
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    after = cpu_snapshot(server_pid)
    if record:
        scenario.seconds += seconds
        # Answers still in flight at the deadline are awaited: CPU is spread over that longer time.
        scenario.cpu_wall_seconds += time.perf_counter() - began
        for group, used in cpu_used(before, after).items():
            scenario.cpu[group] = scenario.cpu.get(group, 0.0) + used


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summary(values: list[float], seconds: float) -> dict[str, float]:
    if not values:
        return {"requests": 0}
    return {
        "requests": len(values),
        "throughput_rps": round(len(values) / seconds, 1),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p90_ms": round(percentile(values, 90) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def code_version() -> str:
    """The commit the server ran, "+changes" when the working tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}+changes" if changes else commit


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_start(*, port: int, workers: int, threads: int, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn",
        "--pythonpath", f"{REPO},{REPO / 'platform'}",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--worker-class", "gthread" if threads > 1 else "sync",
        "--no-control-socket",
        "--graceful-timeout", "5",
        "--error-logfile", str(log),
        "config.wsgi:application",
    ]  # fmt: skip
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    # Its own session: Ctrl-C reaches this script only, which then stops the server by pid.
    with log.open("ab") as output:
        return subprocess.Popen(  # noqa: S603
            command,
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def server_wait(server: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/bare", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within 60 s:\n{log.read_text()[-3000:]}")


def server_stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def search_hit_counts() -> dict[str, dict[str, int]]:
    """How many visible papers and models each query matches, as the anonymous client sees."""
    counts = {}
    with connection.cursor() as cursor:
        for queries in search_queries().values():
            for query in queries:
                row = {}
                for table in ("catalog_paper", "catalog_researchmodel"):
                    cursor.execute(
                        f"SELECT count(*) FROM {table} WHERE visibility = 'public' "  # noqa: S608
                        "AND search_vector @@ websearch_to_tsquery('english', %s)",
                        [query],
                    )
                    row[table.removeprefix("catalog_")] = cursor.fetchone()[0]
                counts[query] = row
    return counts


def result_rows(scenarios: list[Scenario]) -> list[dict]:
    bare = summary(scenarios[0].latencies, scenarios[0].seconds)
    rows = []
    for scenario in scenarios:
        stats = summary(scenario.latencies, scenario.seconds)
        ours = sum(used for group, used in scenario.cpu.items() if group != "machine")
        row = {
            "scenario": scenario.name,
            "endpoint": scenario.endpoint,
            "identity": scenario.identity,
            **stats,
            "errors": len(scenario.errors),
            "error_examples": sorted(set(scenario.errors))[:5],
            "ratio_to_bare": round(stats.get("throughput_rps", 0) / bare["throughput_rps"], 3),
            # Average busy cores while the scenario ran (this machine has os.cpu_count()).
            "cores_used": {
                group: round(used / scenario.cpu_wall_seconds, 2)
                for group, used in scenario.cpu.items()
            },
            # Everything else on the machine: other programs, and PostgreSQL's parallel workers.
            "cores_other": round((scenario.cpu["machine"] - ours) / scenario.cpu_wall_seconds, 2),
        }
        if scenario.name.startswith("search/"):
            labelled = list(zip(scenario.latencies, scenario.labels, strict=True))
            row["by_term_frequency"] = {
                kind: summary([t for t, label in labelled if label == kind], scenario.seconds)
                for kind in search_queries()
            }
        rows.append(row)
    return rows


def table_print(rows: list[dict]) -> None:
    print(
        f"{'scenario':<18}{'requests':>9}{'errors':>7}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x bare':>8}   cores: client gunicorn postgres other"
    )
    for row in rows:
        cores = row["cores_used"]
        print(
            f"{row['scenario']:<18}{row['requests']:>9}{row['errors']:>7}"
            f"{row['throughput_rps']:>8.1f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
            f"{row['ratio_to_bare']:>8.2f}{cores['client']:>15.2f}{cores['gunicorn']:>9.2f}"
            f"{cores['postgres']:>9.2f}{row['cores_other']:>6.2f}"
        )
    for row in rows:
        for kind, stats in row.get("by_term_frequency", {}).items():
            if stats["requests"]:
                print(
                    f"  {row['scenario']:<16} {kind:<7} {stats['requests']:>6} requests"
                    f"  p50 {stats['p50_ms']:>7.1f} ms  p99 {stats['p99_ms']:>7.1f} ms"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (1: sync)")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per scenario")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds per scenario")
    parser.add_argument("--only", nargs="*", default=[], help="scenarios to run (bare always)")
    args = parser.parse_args()

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise SystemExit("The bench database lacks migrations: bench/seed_catalog.py applies them.")
    if not Paper.objects.exists():
        raise SystemExit("The bench database is empty: run bench/seed_catalog.py first.")
    reader = User.objects.get(username=READER_USERNAME)
    token, secret = api_token_create(
        user=reader, name=f"catalog-load {datetime.now(UTC):%Y-%m-%d %H:%M}"
    )
    scenarios = scenarios_build(token_user=reader)
    if args.only:
        scenarios = [s for s in scenarios if s.name == "bare" or s.name in args.only]
    hit_counts = search_hit_counts()
    seeded = {"papers": Paper.objects.count(), "models": ResearchModel.objects.count()}
    connection.close()
    load_before = os.getloadavg()

    port = free_port()
    log = Path(tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")[1])
    server = server_start(port=port, workers=args.workers, threads=args.threads, log=log)
    # SIGTERM unwinds like Ctrl-C, through the finally that stops the server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server_wait(server, port, log)
        headers = {"Accept": "application/json"}
        identities = {
            "anonymous": headers,
            "token": {**headers, "Authorization": f"Bearer {secret}"},
        }
        run = {"port": port, "concurrency": args.concurrency, "server_pid": server.pid}
        for number, scenario in enumerate(scenarios):
            print(f"warm-up {scenario.name}", flush=True)
            segment_run(
                scenario=scenario, headers=identities[scenario.identity], seconds=args.warmup,
                seed=number, record=False, **run,
            )  # fmt: skip
        for round_number in range(args.rounds):
            shift = round_number % len(scenarios)
            for number, scenario in enumerate(scenarios[shift:] + scenarios[:shift]):
                print(f"round {round_number + 1}/{args.rounds}: {scenario.name}", flush=True)
                segment_run(
                    scenario=scenario, headers=identities[scenario.identity],
                    seconds=args.seconds / args.rounds, seed=(round_number + 1) * 100 + number,
                    record=True, **run,
                )  # fmt: skip
    finally:
        server_stop(server)
        api_token_revoke(token=token)

    rows = result_rows(scenarios)
    print()
    table_print(rows)
    stamp = datetime.now(UTC)
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(value, 2) for value in load_before],
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
        },
        "gunicorn": {
            "workers": args.workers,
            "threads": args.threads,
            "worker_class": "gthread" if args.threads > 1 else "sync",
        },
        "client": {
            "concurrency": args.concurrency,
            "measured_seconds_per_scenario": args.seconds,
            "rounds": args.rounds,
            "warmup_seconds_per_scenario": args.warmup,
            "list_pages": LIST_PAGES,
        },
        "code": code_version(),
        "database": settings.DATABASES["default"]["NAME"],
        "seeded": seeded,
        "search_queries": search_queries(),
        "search_hits_public": hit_counts,
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"catalog-{stamp:%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {path.relative_to(REPO)}")
    log.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
