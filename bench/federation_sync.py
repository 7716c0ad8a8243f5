"""Federation between two real nodes: initial sync, incremental sync, OAI-PMH against the feed.

    .venv/bin/python bench/federation_sync.py --quick      # 2,000 / 500 records, about 1.5 min
    .venv/bin/python bench/federation_sync.py              # 50,000 / 5,000 records

Four nodes run as separate `manage.py runserver` processes on 127.0.0.1 (the test suite's
harness, tests/federation/nodes.py), each with its own PostgreSQL database, var dir and key:
origin A (`--records`) mirrored by B, and origin S (`--small`) mirrored by T, the baseline of
the incremental sync. Origins are seeded with bulk_create in their own Django shell, then marked
for the change feed with `feed_touch` in batches (bulk_create sends no signals). Syncs run in a
separate process configured as the mirroring node (its server's environment), which wraps
signing, the feed call, answer verification and `page_apply` in timers and prints JSON. Every
node process is stopped by its pid and every database dropped at the end, also on an error or
Ctrl-C.
"""

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]

MARK = "BENCH-JSON "
BATCH = 5_000
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def _emit(value: Any) -> None:
    print(MARK + json.dumps(value))


def _parse(output: str) -> Any:
    for line in reversed(output.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise RuntimeError(f"no result in the node's output:\n{output[-3000:]}")


def _batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


# Run inside an origin node's Django shell (`Node.python`).
def node_seed(*, records: int, seed: int) -> None:
    """`records` public records: institutions, datasets (with files), benchmarks, papers (with
    authors, some affiliations, ORCID iDs, PDFs and links), models (with tags, links and
    published versions with files). Then one feed_touch per batch and type, referenced types
    first, as the services' signals would have marked them."""
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django.utils import timezone

    from apps.accounts.models import Institution, Membership, User
    from apps.catalog.models import (
        Artifact,
        Benchmark,
        Dataset,
        DatasetFile,
        ModelFile,
        ModelVersion,
        Paper,
        PaperAuthor,
        ResearchModel,
        Tag,
        Visibility,
    )
    from apps.federation.feed import feed_touch
    from bench.seed_catalog import FIRST_NAMES, LAST_NAMES, LICENSES, TASKS, VENUES, TextMaker

    started = time.perf_counter()
    rng = random.Random(seed)  # noqa: S311
    text = TextMaker(rng)
    public = Visibility.PUBLIC
    n_institutions = max(3, records // 2_500)
    n_datasets = max(2, records * 2 // 100)
    n_benchmarks = max(1, records * 4 // 1_000)
    n_models = records * 12 // 100
    n_papers = records - n_institutions - n_datasets - n_benchmarks - n_models

    editor = User.objects.create(
        username="bench-editor", email="editor@bench.example", password=make_password(None)
    )
    institutions = Institution.objects.bulk_create(
        Institution(
            name=f"{text.words_for(1)[0].capitalize()} Institute {n}",
            slug=f"bench-institute-{n}",
            country=rng.choice(["NL", "DE", "GB", "US", "FR", "JP"]),
            website=f"https://institute-{n}.example.org",
            description=text.sentence(20),
        )
        for n in range(n_institutions)
    )
    Membership.objects.bulk_create(
        Membership(user=editor, institution=i, role=Membership.Role.ADMIN) for i in institutions
    )
    tags = Tag.objects.bulk_create(Tag(name=f"bench-tag-{n}") for n in range(60))

    def artifact(fmt: str, name: str) -> Artifact:
        sha = _sha(rng)
        return Artifact(
            sha256=sha, size=rng.randint(10_000, 500_000_000), format=fmt, storage_name=name + sha
        )

    def common() -> dict[str, Any]:
        return {"institution": rng.choice(institutions), "created_by": editor, "visibility": public}

    datasets = Dataset.objects.bulk_create(
        Dataset(
            **common(),
            name=f"{text.words_for(1)[0].capitalize()} corpus {n}",
            slug=f"dataset-{n}",
            description=text.abstract(),
            license=rng.choice(LICENSES),
        )
        for n in range(n_datasets)
    )
    dataset_files = [
        (dataset, artifact("csv", "datasets/"), f"part-{k}.csv")
        for dataset in datasets
        for k in range(rng.randint(1, 3))
    ]
    Artifact.objects.bulk_create([a for _, a, _ in dataset_files], batch_size=BATCH)
    DatasetFile.objects.bulk_create(
        (DatasetFile(dataset=d, artifact=a, filename=f) for d, a, f in dataset_files),
        batch_size=BATCH,
    )
    Dataset.tags.through.objects.bulk_create(
        Dataset.tags.through(dataset_id=d.pk, tag_id=t.pk)
        for d in datasets
        for t in rng.sample(tags, 2)
    )
    benchmarks = Benchmark.objects.bulk_create(
        Benchmark(
            **{**common(), "institution": dataset.institution},
            name=f"{dataset.name} {rng.choice(TASKS)} {n}",
            slug=f"benchmark-{n}",
            description=text.sentence(40),
            task_type=rng.choice(TASKS),
            dataset=dataset,
            metrics=[{"name": "accuracy", "higher_is_better": True}],
            evaluator="onnx",
            evaluator_config={"task": "classification", "data_file": "part-0.csv"},
        )
        for n, dataset in enumerate(rng.choice(datasets) for _ in range(n_benchmarks))
    )

    paper_ids: list[int] = []
    for start in range(0, n_papers, BATCH):
        papers, authors, pdfs = [], [], []
        for number in range(start, min(start + BATCH, n_papers)):
            names = [
                (f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}", rng.random())
                for _ in range(rng.randint(1, 6))
            ]
            authors.append(names)
            pdf = artifact("pdf", "papers/") if rng.random() < 0.1 else None
            if pdf:
                pdfs.append(pdf)
            papers.append(
                Paper(
                    **common(),
                    title=text.title(),
                    abstract=text.abstract(),
                    author_names=", ".join(name for name, _ in names),
                    venue=rng.choice(VENUES),
                    year=rng.randint(1995, 2025),
                    doi=f"10.5555/bench.{number}" if rng.random() < 0.6 else "",
                    arxiv_id=f"{rng.randint(15, 24)}{rng.randint(1, 12):02d}.{number:05d}"
                    if rng.random() < 0.4
                    else "",
                    pdf=pdf,
                )
            )
        Artifact.objects.bulk_create(pdfs)
        for paper in papers:
            paper.pdf_id = paper.pdf.pk if paper.pdf else None
        papers = Paper.objects.bulk_create(papers)
        PaperAuthor.objects.bulk_create(
            PaperAuthor(
                paper=paper,
                position=position,
                name=name,
                orcid=f"0000-0002-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
                if roll < 0.3
                else "",
                institution=paper.institution if roll < 0.5 else None,
            )
            for paper, names in zip(papers, authors, strict=True)
            for position, (name, roll) in enumerate(names, start=1)
        )
        Paper.datasets.through.objects.bulk_create(
            Paper.datasets.through(paper_id=p.pk, dataset_id=rng.choice(datasets).pk)
            for p in papers
            if rng.random() < 0.1
        )
        Paper.benchmarks.through.objects.bulk_create(
            Paper.benchmarks.through(paper_id=p.pk, benchmark_id=rng.choice(benchmarks).pk)
            for p in papers
            if rng.random() < 0.05
        )
        paper_ids.extend(p.pk for p in papers)

    published = timezone.now()
    model_ids: list[int] = []
    for start in range(0, n_models, BATCH):
        models = []
        for number in range(start, min(start + BATCH, n_models)):
            name = f"{text.words_for(1)[0]}-{number}"
            models.append(
                ResearchModel(
                    **common(),
                    name=name,
                    slug=name[:80],
                    summary=text.sentence(rng.randint(10, 20))[:500],
                    card=f"# {name}\n\n{text.abstract()}",
                    license=rng.choice(LICENSES),
                    task=rng.choice(TASKS),
                )
            )
        models = ResearchModel.objects.bulk_create(models)
        versions = ModelVersion.objects.bulk_create(
            ModelVersion(
                model=m,
                label=f"1.{k}",
                release_notes=text.sentence(12),
                published_at=published,
                created_by=editor,
            )
            for m in models
            for k in range(rng.randint(1, 3))
        )
        files = [
            (v, artifact("onnx", "models/"), f"model-{k}.onnx")
            for v in versions
            for k in range(rng.randint(1, 2))
        ]
        Artifact.objects.bulk_create([a for _, a, _ in files])
        ModelFile.objects.bulk_create(
            ModelFile(version=v, artifact=a, filename=f) for v, a, f in files
        )
        ResearchModel.tags.through.objects.bulk_create(
            ResearchModel.tags.through(researchmodel_id=m.pk, tag_id=t.pk)
            for m in models
            for t in rng.sample(tags, rng.randint(1, 4))
        )
        ResearchModel.papers.through.objects.bulk_create(
            ResearchModel.papers.through(researchmodel_id=m.pk, paper_id=p)
            for m in models
            for p in rng.sample(paper_ids, rng.randint(0, 2))
        )
        ResearchModel.benchmarks.through.objects.bulk_create(
            ResearchModel.benchmarks.through(researchmodel_id=m.pk, benchmark_id=b.pk)
            for m in models
            for b in rng.sample(benchmarks, rng.randint(0, 1))
        )
        model_ids.extend(m.pk for m in models)
    created = time.perf_counter() - started

    touched = time.perf_counter()
    for record_type, ids in (
        ("institution", [i.pk for i in institutions]),
        ("dataset", [d.pk for d in datasets]),
        ("benchmark", [b.pk for b in benchmarks]),
        ("paper", paper_ids),
        ("model", model_ids),
    ):
        for batch in _batched(ids, BATCH):
            feed_touch(record_type=record_type, ids=batch)
    touched = time.perf_counter() - touched
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    _emit(
        {
            "institution": n_institutions,
            "dataset": n_datasets,
            "benchmark": n_benchmarks,
            "paper": n_papers,
            "model": n_models,
            "authors": PaperAuthor.objects.count(),
            "versions": ModelVersion.objects.count(),
            "files": ModelFile.objects.count() + DatasetFile.objects.count(),
            "create_s": created,
            "feed_touch_s": touched,
        }
    )


def node_change(*, changes: int, seed: int) -> None:
    """`changes` updates of existing public records through the services (their signals mark
    the feed): 70 % papers, 20 % models, 10 % datasets."""
    from apps.accounts.models import User
    from apps.catalog import services
    from apps.catalog.models import Dataset, Paper, ResearchModel

    rng = random.Random(seed)  # noqa: S311
    editor = User.objects.get(username="bench-editor")
    n_models, n_datasets = changes * 2 // 10, changes // 10
    n_papers = changes - n_models - n_datasets
    stamp = f"rev {seed}"
    for kind, count, update in (
        (Paper, n_papers, lambda r: services.paper_update(user=editor, paper=r, venue=stamp)),
        (
            ResearchModel,
            n_models,
            lambda r: services.model_update(user=editor, model=r, task=stamp),
        ),
        (
            Dataset,
            n_datasets,
            lambda r: services.dataset_update(user=editor, dataset=r, description=stamp),
        ),
    ):
        ids = list(kind.objects.values_list("pk", flat=True))
        for record in kind.objects.filter(pk__in=rng.sample(ids, count)):
            update(record)
    _emit({"changed": changes})


def _timed(timers: dict[str, list[float]], name: str, function: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timers[name][0] += time.perf_counter() - started
            timers[name][1] += 1

    return wrapper


# Run inside a mirroring node's Django shell.
def node_sync(*, origin: str, profile: str = "") -> None:
    """One `peer_sync_now` of the origin, with its parts timed (and profiled into `profile`)."""
    from apps.federation import client, httpsig, services, signatures, sync
    from apps.federation.models import Peer

    timers: dict[str, list[float]] = {k: [0.0, 0] for k in ("sign", "call", "verify", "apply")}
    signatures.sign_outbound = _timed(timers, "sign", signatures.sign_outbound)
    httpsig.verify_response = _timed(timers, "verify", httpsig.verify_response)
    client.peer_call = _timed(timers, "call", client.peer_call)
    sync.page_apply = _timed(timers, "apply", sync.page_apply)
    peer = Peer.objects.get(node_id=origin)
    cpu, started = time.process_time(), time.perf_counter()
    if profile:
        import cProfile

        with cProfile.Profile() as profiler:
            report = services.peer_sync_now(peer_id=peer.pk)
        profiler.dump_stats(profile)
    else:
        report = services.peer_sync_now(peer_id=peer.pk)
    wall = time.perf_counter() - started
    _emit(
        {
            "wall_s": wall,
            "cpu_s": time.process_time() - cpu,
            "report": report.as_dict(),
            "timers": {k: {"s": v[0], "calls": v[1]} for k, v in timers.items()},
        }
    )


def node_feed_read(*, origin: str, limit: int) -> None:
    """Reads the origin's whole feed through the signed client, applying nothing."""
    from apps.federation import client
    from apps.federation.contract import FEED_PATH
    from apps.federation.models import Peer

    peer = Peer.objects.get(node_id=origin)
    cursor, records, pages = "", 0, 0
    started = time.perf_counter()
    while True:
        page = client.peer_call(peer, "GET", FEED_PATH, params={"cursor": cursor, "limit": limit})
        records += len(page["records"])
        pages += 1
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    _emit({"wall_s": time.perf_counter() - started, "records": records, "pages": pages})


def node_feed_local(*, limit: int) -> None:
    """Renders the whole feed in-process on the origin (no HTTP, no signatures)."""
    from apps.federation.feed import feed_page

    cursor, records = "", 0
    started = time.perf_counter()
    while True:
        page = feed_page(cursor=cursor, limit=limit)
        records += len(page["records"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    _emit({"wall_s": time.perf_counter() - started, "records": records})


def _call(node, function: str, timeout: float = 7200, **kwargs: Any) -> Any:
    arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return _parse(
        node.python(
            f"from bench.federation_sync import {function}\n{function}({arguments})\n", timeout
        )
    )


def oai_harvest(url: str) -> dict[str, Any]:
    """ListRecords in oai_dc from the start to the last resumption token, plain requests."""
    import requests
    from lxml import etree

    ns = {"o": "http://www.openarchives.org/OAI/2.0/"}
    params: dict[str, str] = {"verb": "ListRecords", "metadataPrefix": "oai_dc"}
    records = pages = 0
    started = time.perf_counter()
    with requests.Session() as session:
        while True:
            answer = session.get(f"{url}/oai", params=params, timeout=120)
            answer.raise_for_status()
            document = etree.fromstring(answer.content)
            if document.find("o:error", ns) is not None:
                raise RuntimeError(answer.text[:2000])
            records += len(document.findall("o:ListRecords/o:record", ns))
            pages += 1
            token = document.find("o:ListRecords/o:resumptionToken", ns)
            if token is None or not (token.text or "").strip():
                break
            params = {"verb": "ListRecords", "resumptionToken": token.text.strip()}
    return {"wall_s": time.perf_counter() - started, "records": records, "pages": pages}


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _configure_django() -> None:
    """The harness reads only settings.DATABASES (where to create and drop databases)."""
    import environ
    from django.conf import settings

    url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    settings.configure(DATABASES={"default": environ.Env.db_url_config(url)})
    host = settings.DATABASES["default"]["HOST"] or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"This bench talks to 127.0.0.1 only, not {host}.")


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "-"


def _sync_breakdown(label: str, result: dict[str, Any], records: int) -> dict[str, float]:
    t = result["timers"]
    wall = result["wall_s"]
    sign, verify, apply = t["sign"]["s"], t["verify"]["s"], t["apply"]["s"]
    fetch = t["call"]["s"] - sign - verify
    other = wall - t["call"]["s"] - apply
    print(f"\n{label}: {records:,} records in {wall:.1f} s = {records / wall:,.0f} records/s")
    print(f"  pages {result['report']['pages']}, report {result['report']}")
    print(f"  sync process CPU {result['cpu_s']:.1f} s ({result['cpu_s'] / wall:.2f} cores)")
    for name, value in (
        ("signing requests (sign_outbound)", sign),
        ("fetching: HTTP round trip, origin renders the page", fetch),
        ("verifying signed answers", verify),
        ("upserting (page_apply)", apply),
        ("other: page transaction, cursor, commit", other),
    ):
        print(f"  {name:52} {value:8.2f} s  {_share(value, wall)}")
    return {"sign": sign, "fetch": fetch, "verify": verify, "apply": apply, "other": other}


def run(args: argparse.Namespace, folder: Path, nodes: list) -> dict[str, Any]:
    from tests.federation.nodes import Node, peer, start_nodes

    a, b = Node("A", folder / "a"), Node("B", folder / "b")
    s, t = Node("S", folder / "s"), Node("T", folder / "t")
    nodes.extend([a, b, s, t])
    print(f"Load average before: {os.getloadavg()[0]:.2f} (2 cores here)")
    began = time.perf_counter()
    start_nodes(nodes)
    print(f"4 nodes migrated and serving in {time.perf_counter() - began:.0f} s")
    peer(b, a)
    peer(t, s)

    began = time.perf_counter()
    big = _call(a, "node_seed", records=args.records, seed=1)
    small = _call(s, "node_seed", records=args.small, seed=2)
    print(
        f"Seeded A with {args.records:,} and S with {args.small:,} public records in "
        f"{time.perf_counter() - began:.0f} s: bulk_create, then feed_touch in batches of "
        f"{BATCH:,} (bulk_create sends no signals), then VACUUM ANALYZE."
    )
    print(f"  A: {big}")
    types = ("institution", "dataset", "benchmark", "paper", "model")
    fed = sum(big[k] for k in types)
    oai_count = fed - big["institution"]

    cpu_a = _cpu_of(a.process.pid)
    profile = str(args.profile) + "-{}.prof" if args.profile else ""
    initial = _call(b, "node_sync", origin=a.url, profile=profile.format("initial"))
    cpu_a = _cpu_of(a.process.pid) - cpu_a
    parts = _sync_breakdown("1. Initial sync A -> B", initial, fed)
    print(f"  origin A's server CPU during the sync: {cpu_a:.1f} s")
    initial_small = _call(t, "node_sync", origin=s.url)
    _sync_breakdown("   Initial sync S -> T (small)", initial_small, sum(small[k] for k in types))

    rounds: dict[str, list[float]] = {"big": [], "small": []}
    incremental: dict[str, list[dict]] = {"big": [], "small": []}
    for number in range(args.rounds):
        order = [("big", a, b), ("small", s, t)]
        if number % 2:
            order.reverse()
        for key, origin, mirror in order:
            _call(origin, "node_change", changes=args.changes, seed=100 + number)
            last = number == args.rounds - 1 and key == "big"
            result = _call(
                mirror,
                "node_sync",
                origin=origin.url,
                profile=profile.format("incremental") if last else "",
            )
            # A dataset's benchmarks follow it in the feed, so a few more than `changes`.
            if result["report"]["upserted"] < args.changes or result["report"]["rejected"]:
                raise RuntimeError(f"expected {args.changes} upserts: {result['report']}")
            rounds[key].append(result["wall_s"])
            incremental[key].append(result)
    big_s, small_s = statistics.median(rounds["big"]), statistics.median(rounds["small"])
    print(f"\n2. Incremental sync of {args.changes} updated records, {args.rounds} rounds:")
    for key, size in (("big", args.records), ("small", args.small)):
        times = ", ".join(f"{x:.3f}" for x in rounds[key])
        last = incremental[key][-1]["timers"]
        print(
            f"  {size:>7,}-record node: median {statistics.median(rounds[key]):.3f} s ({times}); "
            f"last: {incremental[key][-1]['report']['upserted']} records upserted, "
            f"call {last['call']['s']:.3f} s, apply {last['apply']['s']:.3f} s"
        )
    ratio = big_s / small_s
    verdict = "aim met" if ratio <= 1.2 else "aim NOT met"
    print(f"  ratio {args.records:,} / {args.small:,}: {ratio:.2f} (aim <= 1.2: {verdict})")

    oai = oai_harvest(a.url)
    feed = _call(b, "node_feed_read", origin=a.url, limit=500)
    local = _call(a, "node_feed_local", limit=500)
    print("\n3. Reading A's whole catalogue")
    oai_rate = oai["records"] / oai["wall_s"]
    for label, result in (
        (f"OAI-PMH ListRecords oai_dc, {oai['pages']} pages (plain requests)", oai),
        (f"change feed, signed client from B, {feed['pages']} pages of 500", feed),
        ("change feed, feed_page in-process on A, pages of 500", local),
    ):
        rate = result["records"] / result["wall_s"]
        print(
            f"  {label:62} {result['records']:>7,} records {result['wall_s']:7.1f} s "
            f"{rate:8,.0f} records/s  x OAI {rate / oai_rate:5.2f}"
        )
    print(f"Load average after: {os.getloadavg()[0]:.2f}")
    if oai["records"] != oai_count:
        print(f"  warning: OAI listed {oai['records']:,} records, {oai_count:,} expected")
    return {
        "records": args.records,
        "small": args.small,
        "seed": big,
        "initial": initial,
        "initial_parts": parts,
        "origin_cpu_s": cpu_a,
        "initial_small": initial_small,
        "incremental": incremental,
        "incremental_ratio": ratio,
        "oai": oai,
        "feed_signed": feed,
        "feed_local": local,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000, help="records of origin A")
    parser.add_argument("--small", type=int, default=5_000, help="records of origin S")
    parser.add_argument("--changes", type=int, default=100, help="updates per incremental sync")
    parser.add_argument("--rounds", type=int, default=3, help="incremental syncs of each size")
    parser.add_argument("--quick", action="store_true", help="2,000 / 500 records, one round")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile the initial sync A -> B and the last incremental one into "
        "PROFILE-initial.prof and PROFILE-incremental.prof (slower)",
    )
    args = parser.parse_args()
    if args.quick:
        args.records, args.small, args.rounds = 2_000, 500, 1
    if min(args.records, args.small) < 10 * args.changes // 9:
        parser.error("each origin needs more records than --changes")

    _configure_django()
    # SIGTERM ends the run like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    nodes: list = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rx-bench-federation-") as folder:
        try:
            figures = run(args, Path(folder), nodes)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for node in nodes:
                try:
                    node.stop()
                except Exception as error:  # stop the others anyway
                    print(f"could not stop node {node.name}: {error}", file=sys.stderr)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"\nDone in {time.perf_counter() - began:.0f} s; nodes stopped, databases dropped.")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
