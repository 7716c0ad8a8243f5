"""The command line's commands beyond the login: models, papers, evaluations, results."""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rx_client import config, jobs, output
from rx_client.client import JSON, Client
from rx_client.errors import RxError
from rx_client.output import as_json
from rx_client.transfer import (
    ModelReference,
    Progress,
    download_version,
    publish_folder,
    resolve_version,
)

VISIBILITIES = ("public", "institution", "private")

__all__ = ["add_eval", "add_models", "add_papers", "add_results", "as_json", "make_client"]


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _retries() -> int:
    value = os.environ.get("RX_RETRIES", "")
    return int(value) if value.isdigit() else 4


def _on_retry(what: str, delay: float, number: int, tries: int) -> None:
    status(f"rx: {what}; try {number} of {tries} in {delay:.1f} s")


def make_client(url: str | None = None, token: str | None = None) -> Client:
    """A client of the node RX_URL / RX_TOKEN or the saved login name (or of `url`, `token`);
    RX_RETRIES: how often a failure that may pass is retried (default 4)."""
    credentials = config.current()
    return Client(
        url or credentials.url,
        token if token is not None else credentials.token,
        retries=_retries(),
        on_retry=_on_retry,
    )


def _client() -> Client:
    return make_client()


def progress_bar(description: str, total: int) -> Progress:
    # On a terminal a bar per file; elsewhere (logs, CI) none, each step says one line instead.
    return tqdm(
        total=total,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=None,
        leave=not description.startswith("sha256 "),
    )


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not an id (a positive whole number)")
    return int(text)


def models_publish(args: argparse.Namespace) -> int:
    with _client() as client:
        report = publish_folder(
            client,
            Path(args.folder),
            institution=args.institution,
            model=args.model,
            label=args.version,
            name=args.name,
            license=args.license,
            visibility=args.visibility,
            summary=args.summary,
            release_notes=args.notes,
            progress=progress_bar,
            notify=status,
        )
    version = report.version
    reference = f"{args.institution}/{args.model}@{version['label']}"
    count = len(version.get("files", []))
    files = f"{count} file" + ("" if count == 1 else "s")
    if report.already_published:
        print(f"{reference} was already published (version id {version['id']}, {files})")
    else:
        print(f"Published {reference} (version id {version['id']}, {files})")
    return 0


def models_download(args: argparse.Namespace) -> int:
    reference = ModelReference.parse(args.reference)
    dest = Path(args.dest)
    with _client() as client:
        outcomes = download_version(client, reference, dest, progress=progress_bar, notify=status)
    for filename, outcome in outcomes.items():
        print(f"{dest / filename}: {outcome}, sha256 verified")
    return 0


def add_models(sub: Any) -> None:
    models = sub.add_parser("models", help="publish and download model versions")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser(
        "publish",
        help="publish a folder's files as a model version",
        description="Creates the model if it is missing, uploads every file of FOLDER (files "
        "the node already has, by sha256, are not sent again), and publishes the version. "
        "Running it again after an interruption finishes the same version.",
    )
    p.add_argument("folder", metavar="FOLDER")
    p.add_argument("--institution", required=True, metavar="SLUG")
    p.add_argument("--model", required=True, metavar="SLUG")
    p.add_argument("--name", help="the model's name, when it is created (default: its slug)")
    p.add_argument("--license", help="SPDX license id, needed to create the model (e.g. MIT)")
    p.add_argument("--summary", default="", help="one line about the model, when it is created")
    p.add_argument("--version", default="1.0", metavar="LABEL", help="default: 1.0")
    p.add_argument("--notes", default="", help="release notes of the version")
    p.add_argument("--visibility", choices=VISIBILITIES, help="of a new model (default public)")
    p.set_defaults(func=models_publish)

    p = actions.add_parser(
        "download",
        help="download every file of a model version",
        description="Downloads each file, checks its sha256 and resumes a partial download "
        "(FILE.part) where it stopped.",
    )
    p.add_argument("reference", metavar="INST/MODEL[@LABEL]", help="default: latest version")
    p.add_argument("--dest", default=".", metavar="DIR", help="default: this folder")
    p.set_defaults(func=models_download)


def papers_import(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise RxError(
            f"{args.file} is not UTF-8 text (byte {error.object[error.start]:#x} at "
            f"{error.start}); convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from error
    with _client() as client:
        report = client.papers_import_bibtex(
            institution=args.institution, bibtex=text, visibility=args.visibility
        )
    for paper in report["created"]:
        print(f"imported paper {paper['id']}: {paper['name']}")
    for refusal in report["errors"]:
        where = f" (line {refusal['line']})" if refusal.get("line") else ""
        print(f"refused {refusal['key'] or 'an entry'}{where}: {refusal['message']}")
    print(f"{len(report['created'])} imported, {len(report['errors'])} refused")
    return 1 if report["errors"] else 0


def add_papers(sub: Any) -> None:
    papers = sub.add_parser("papers", help="import papers")
    actions = papers.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "import-bibtex",
        help="import the entries of a .bib file",
        description="Good entries are imported; each refused one is reported by its key "
        "(exit code 1 when any was refused).",
    )
    p.add_argument("file", metavar="FILE.bib")
    p.add_argument("--institution", required=True, metavar="SLUG")
    p.add_argument("--visibility", choices=VISIBILITIES, help="default public")
    p.set_defaults(func=papers_import)


def _version_id(client: Client, text: str) -> int:
    if text.isdigit():
        return int(text)
    _model, version = resolve_version(client, ModelReference.parse(text))
    return int(version["id"])


class _Terminal:
    """Log text goes to `log_out` (stdout) as it comes; a line of ours starts on a fresh line."""

    def __init__(self, log_out: Any = None) -> None:
        self.log_out = log_out or sys.stdout
        self.mid_line = False

    def log(self, text: str) -> None:
        self.log_out.write(text)
        self.log_out.flush()
        self.mid_line = not text.endswith("\n")

    def say(self, message: str, *, out: Any = None) -> None:
        if self.mid_line:
            self.log_out.write("\n")
            self.mid_line = False
        print(message, file=out or sys.stderr, flush=True)


def _describe(job: JSON) -> str:
    state = job["state"]
    if state == "dispatched":
        return f"job {job['id']}: dispatched to {job.get('node') or 'a node'}"
    if state == "running":
        return (
            f"job {job['id']}: running on {job.get('node') or 'a node'}, attempt {job['attempt']}"
        )
    return f"job {job['id']}: {state}"


def _queue_line(job: JSON, queue: dict[str, Any]) -> str:
    parts = []
    if queue.get("position") is not None:
        of = f" of {queue['pending']}" if queue.get("pending") else ""
        parts.append(f"position {queue['position']}{of} in the queue")
    if queue.get("estimated_start"):
        parts.append(f"estimated start {output.moment(queue['estimated_start'])}")
    line = f"job {job['id']}: " + (", ".join(parts) or "waiting in the queue")
    return f"{line} ({queue['explanation']})" if queue.get("explanation") else line


def _outcome(job: JSON, terminal: _Terminal) -> int:
    state = job["state"]
    if state == "succeeded":
        terminal.say(f"job {job['id']} succeeded", out=sys.stdout)
        rows = [(name, output.number(value)) for name, value in (job.get("metrics") or {}).items()]
        if rows:
            output.table(["METRIC", "VALUE"], rows, numeric=[1])
    elif state == "failed":
        reason = job.get("failure_reason") or "no reason given"
        terminal.say(f"job {job['id']} failed: {reason}", out=sys.stdout)
    elif state == "cancelled":
        terminal.say(f"job {job['id']} was cancelled", out=sys.stdout)
    elif state == "timed_out":
        terminal.say(f"job {job['id']} timed out: {job.get('failure_reason') or ''}".rstrip(": "))
    return jobs.EXIT_CODES.get(state, 2)


def _wait(client: Client, job_id: int, poll: float, *, json: bool = False) -> int:
    """Follows the job; with `json`, stdout gets only the ended job as JSON (the rest goes to
    stderr)."""
    terminal = _Terminal(sys.stderr if json else None)

    def state_changed(job: JSON) -> None:
        if job["state"] in jobs.ACTIVE_STATES:  # how it ended is said once, by the outcome
            terminal.say(_describe(job))

    try:
        job = jobs.follow(
            client,
            job_id,
            poll_seconds=poll,
            on_state=state_changed,
            on_queue=lambda job, queue: terminal.say(_queue_line(job, queue)),
            on_log=terminal.log,
            on_attempt=lambda n: terminal.say(f"job {job_id}: attempt {n} starts over"),
        )
    except KeyboardInterrupt:
        terminal.say(
            f"Stopped following job {job_id}; it goes on at the node. "
            f"Follow it again with: rx eval wait {job_id}"
        )
        return 130
    if json:
        as_json(job)
        return jobs.EXIT_CODES.get(job["state"], 2)
    return _outcome(job, terminal)


def eval_submit(args: argparse.Namespace) -> int:
    with _client() as client:
        job = client.job_submit(
            model_version=_version_id(client, args.model_version),
            benchmark=args.benchmark,
            institution=args.institution,
            allocation=args.allocation,
        )
        if args.json and not args.wait:
            as_json(job)
            return 0
        print(
            f"Submitted job {job['id']}: {job['model_name']} {job['model_version']} on "
            f"{job['benchmark_name']} ({job['state']})",
            file=sys.stderr if args.json else sys.stdout,
            flush=True,
        )
        if not args.wait:
            print(f"Follow it with: rx eval wait {job['id']}")
            return 0
        return _wait(client, job["id"], args.poll, json=args.json)


def eval_wait(args: argparse.Namespace) -> int:
    with _client() as client:
        return _wait(client, args.job, args.poll)


def eval_show(args: argparse.Namespace) -> int:
    with _client() as client:
        job = client.job_get(args.job)
    if args.json:
        as_json(job)
        return 0
    rows = [
        ("state", job["state"]),
        ("model", f"{job['model_name']} {job['model_version']} (model {job['model']})"),
        ("benchmark", f"{job['benchmark_name']} ({job['benchmark']})"),
        ("institution", job["institution"]),
        ("submitter", job["submitter"]),
        ("attempt", f"{job['attempt']} of {job['max_attempts']}"),
        ("node", job.get("node") or ""),
        ("submitted", output.moment(job.get("submitted_at"))),
        ("started", output.moment(job.get("started_at"))),
        ("finished", output.moment(job.get("finished_at"))),
    ]
    if queue := jobs.queue_place(job):
        rows.append(("queue", _queue_line(job, queue).split(": ", 1)[1]))
    if job.get("failure_reason"):
        rows.append(("reason", job["failure_reason"]))
    if job.get("metrics"):
        rows.append(("metrics", output.metrics(job["metrics"])))
    width = max(len(name) for name, _ in rows)
    print(f"job {job['id']}")
    for name, value in rows:
        if value:
            print(f"  {name.ljust(width)}  {value}")
    return 0


def eval_cancel(args: argparse.Namespace) -> int:
    with _client() as client:
        job = client.job_cancel(args.job, reason=args.reason)
    print(f"job {job['id']}: {job['state']}")
    return 0


def add_eval(sub: Any) -> None:
    evaluation = sub.add_parser("eval", help="submit and follow evaluation jobs")
    actions = evaluation.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser(
        "submit",
        help="submit a model version to a benchmark",
        description="With --wait: follow the job to its end (exit code 0 succeeded, 1 failed, "
        "3 cancelled, 4 timed out); Ctrl-C stops following and leaves the job running.",
    )
    p.add_argument(
        "--model-version", required=True, metavar="ID|INST/MODEL@LABEL", help="a published version"
    )
    p.add_argument("--benchmark", required=True, type=_positive_int, metavar="ID")
    p.add_argument("--institution", metavar="SLUG", help="which of yours pays, if several")
    p.add_argument("--allocation", type=_positive_int, metavar="ID", help="which allocation")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the job as JSON on stdout (with --wait: as it ended; the rest on stderr)",
    )
    p.set_defaults(func=eval_submit)

    p = actions.add_parser("wait", help="follow a job until it ends (exit code by its outcome)")
    p.add_argument("job", type=_positive_int, metavar="ID")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.set_defaults(func=eval_wait)

    p = actions.add_parser("show", help="a job's state, times and metrics")
    p.add_argument("job", type=_positive_int, metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=eval_show)

    p = actions.add_parser("cancel", help="cancel a job")
    p.add_argument("job", type=_positive_int, metavar="ID")
    p.add_argument("--reason", default="")
    p.set_defaults(func=eval_cancel)


def _model_id(client: Client, text: str) -> int:
    if text.isdigit():
        return int(text)
    reference = ModelReference.parse(text)
    model = client.model_find(reference.institution, reference.model)
    if model is None:
        raise RxError(f"no model {reference} that you can see on {client.url}")
    return int(model["id"])


def results_list(args: argparse.Namespace) -> int:
    with _client() as client:
        model = _model_id(client, args.model) if args.model else None
        rows = client.results(benchmark=args.benchmark, model=model, limit=args.limit)
    if args.json:
        as_json(rows)
        return 0
    output.table(
        ["RESULT", "MODEL", "VERSION", "INSTITUTION", "BENCHMARK", "METRICS", "NODE", "FINISHED"],
        [
            (
                row["id"],
                row["model"]["name"],
                row["model"]["version"],
                row["model"]["institution"],
                f"{row['benchmark']['name']} ({row['benchmark']['id']})",
                output.metrics(row["metrics"]),
                row.get("node") or (row.get("ran_by") or {}).get("node_name") or "",
                output.moment(row.get("finished_at")),
            )
            for row in rows
        ],
        numeric=[0],
    )
    return 0


def leaderboard(args: argparse.Namespace) -> int:
    with _client() as client:
        board = client.leaderboard(args.benchmark, metric=args.metric, institution=args.institution)
    if args.json:
        as_json(board)
        return 0
    rows = [
        (
            "" if entry["rank"] is None else entry["rank"],
            output.number(entry["score"]),
            entry["result"]["model"]["name"],
            entry["result"]["model"]["version"],
            entry["result"]["model"]["institution"],
            entry["runs"],
            entry["result"]["id"],
        )
        for entry in board["entries"]
    ]
    direction = "higher is better" if board["higher_is_better"] else "lower is better"
    print(f"benchmark {board['benchmark']}, by {board['metric']} ({direction})")
    output.table(
        ["RANK", board["metric"].upper(), "MODEL", "VERSION", "INSTITUTION", "RUNS", "RESULT"],
        rows,
        numeric=[0, 1, 5, 6],
    )
    return 0


def add_results(sub: Any) -> None:
    results = sub.add_parser("results", help="evaluation results")
    actions = results.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="results you can see, newest first")
    p.add_argument("--benchmark", type=_positive_int, metavar="ID")
    p.add_argument("--model", metavar="ID|INST/MODEL")
    p.add_argument("--limit", type=_positive_int, default=50, help="default 50")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=results_list)

    p = sub.add_parser("leaderboard", help="a benchmark's leaderboard")
    p.add_argument("benchmark", type=_positive_int, metavar="BENCHMARK_ID")
    p.add_argument("--metric", help="rank by this metric (default: the benchmark's first)")
    p.add_argument("--institution", metavar="SLUG", help="only models it publishes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=leaderboard)
