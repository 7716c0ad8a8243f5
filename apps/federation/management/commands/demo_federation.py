"""Peers the two demo nodes that `make run` starts, through the protocol as operators would:
this node's staff asks the other node, the other node's staff approves (through its API), and
each pulls the other's feed at once. This node then grants the other node's lab GPU-hours of
its pool, and the lab's researcher, on the other node, evaluates a model on this node's GPUs.
Then it reports, every half minute, what each node mirrors of the other and how that
evaluation goes, until it is stopped."""

import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import requests
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.accounts.models import Institution, User
from apps.catalog.models import Dataset, Paper, ResearchModel
from apps.compute import services as compute_services
from apps.compute.models import Allocation
from apps.federation import client, grants, services
from apps.federation.demo import DIGITS_MODEL_SLUG, RESEARCHER_TOKEN_FILE
from apps.federation.models import Peer

DIGITS_BENCHMARK_SLUG = "digits-held-out"  # the first node's, from the evaluations demo

STARTUP_SECONDS = 180
REPORT_EVERY_SECONDS = 30


class Command(BaseCommand):
    help = "Peer this demo node with the second demo node and report what each mirrors."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--peer", required=True, help="The second node's base URL.")
        parser.add_argument(
            "--peer-token-file", required=True, help="The second node's operator API token."
        )
        parser.add_argument("--self", dest="own_url", required=True, help="This node's URL.")
        parser.add_argument("--once", action="store_true", help="Peer, sync, report, stop.")

    def handle(self, *args, **options) -> None:
        peer_url, own_url = options["peer"].rstrip("/"), options["own_url"].rstrip("/")
        token = Path(options["peer_token_file"]).read_text().strip()
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        for url in (own_url, peer_url):
            self._wait_for(url)
        peer = self._peer(peer_url)
        self._approve_there(session, peer_url, own_url)
        peer.refresh_from_db()
        services.peer_sync_now(peer_id=peer.pk)
        session.post(f"{peer_url}/api/v1/federation/peers/{self._id_there}/sync/", timeout=120)
        researcher = requests.Session()
        token_file = Path(options["peer_token_file"]).with_name(RESEARCHER_TOKEN_FILE)
        researcher.headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"
        self._evaluate_on_our_gpus(researcher, peer, peer_url, own_url)
        while True:
            self._report(session, peer, peer_url, own_url)
            self._report_remote_jobs(researcher, peer_url)
            if options["once"]:
                return
            time.sleep(REPORT_EVERY_SECONDS)

    def _evaluate_on_our_gpus(
        self, researcher: requests.Session, peer: Peer, peer_url: str, own_url: str
    ) -> None:
        """This node grants the peer's lab GPU-hours of its pool; the lab's researcher, at the
        peer, evaluates their digits model on this node's digits benchmark under that grant."""
        institution = Institution.objects.filter(origin_node=peer_url).first()
        admin = User.objects.filter(is_staff=True).order_by("pk").first()
        if institution is None or admin is None:
            raise CommandError("The peer's institution has not been mirrored: sync first.")
        allocation = Allocation.objects.filter(institution=institution, origin_node="").first()
        if allocation is None:
            now = timezone.now()
            allocation = compute_services.allocation_create(
                user=admin, institution=institution, name="Kestrel Bay on this node's pool",
                gpu_hours=Decimal(20), starts_at=now, ends_at=now + timedelta(days=90),
            )  # fmt: skip
        grants.grant_announce(allocation_id=allocation.pk)
        api = f"{peer_url}/api/v1"
        if researcher.get(f"{api}/federation/remote-jobs/", timeout=30).json()["count"]:
            return
        held = researcher.get(f"{api}/allocations/", timeout=30).json()["results"]
        grant = next((g for g in held if g["held_at"] == own_url), None)
        benchmarks = researcher.get(
            f"{api}/benchmarks/", params={"origin": own_url, "page_size": "100"}, timeout=30
        ).json()["results"]
        benchmark = next((b for b in benchmarks if b["slug"] == DIGITS_BENCHMARK_SLUG), None)
        models = researcher.get(
            f"{api}/models/", params={"origin": "local", "page_size": "100"}, timeout=30
        ).json()["results"]
        model = next((m for m in models if m["slug"] == DIGITS_MODEL_SLUG), None)
        if grant is None or benchmark is None or model is None:
            self.stdout.write("The peer has not received the grant or the benchmark yet.")
            return
        versions = researcher.get(f"{api}/models/{model['id']}/", timeout=30).json()["versions"]
        answer = researcher.post(
            f"{api}/federation/remote-jobs/",
            json={
                "model_version": versions[0]["id"],
                "benchmark": benchmark["id"],
                "allocation": grant["id"],
            },
            timeout=120,
        )
        self.stdout.write(
            f"{peer_url} sent an evaluation to run on this node's GPUs: "
            f"{answer.status_code} {answer.json().get('state', answer.text[:300])}"
        )

    def _report_remote_jobs(self, researcher: requests.Session, peer_url: str) -> None:
        try:
            jobs = researcher.get(f"{peer_url}/api/v1/federation/remote-jobs/", timeout=30).json()
        except (requests.RequestException, ValueError):
            return
        for job in jobs.get("results", [])[:3]:
            self.stdout.write(
                f"Evaluation on this node's GPUs for {peer_url}: {job['model_name']} on "
                f"{job['benchmark_name']}: {job['state']}"
                + (f", result {job['result']} there, signed here" if job["result"] else "")
            )

    def _wait_for(self, url: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise CommandError(f"{url} did not start within {STARTUP_SECONDS} s.")

    def _peer(self, peer_url: str) -> Peer:
        peer = Peer.objects.filter(node_id=peer_url).first()
        if peer is not None and peer.state != Peer.State.REFUSED:
            return peer
        admin = User.objects.filter(is_staff=True).order_by("pk").first()
        if admin is None:
            raise CommandError("This node has no staff account: run demo_seed first.")
        peer = services.peer_add(base_url=peer_url, actor=admin)
        self.stdout.write(f"Asked {peer_url} to peer.")
        return peer

    def _approve_there(self, session: requests.Session, peer_url: str, own_url: str) -> None:
        peers = session.get(f"{peer_url}/api/v1/federation/peers/", timeout=30).json()
        there = next(p for p in peers["results"] if p["node_id"] == own_url)
        self._id_there = there["id"]
        if there["state"] == Peer.State.PENDING:
            session.post(
                f"{peer_url}/api/v1/federation/peers/{there['id']}/approve/",
                json={"note": "The demo's two nodes."},
                timeout=60,
            ).raise_for_status()
            self.stdout.write(f"{peer_url} approved the peering.")

    def _report(self, session, peer: Peer, peer_url: str, own_url: str) -> None:
        here = {
            "papers": Paper.objects.filter(origin_node=peer_url).count(),
            "models": ResearchModel.objects.filter(origin_node=peer_url).count(),
            "datasets": Dataset.objects.filter(origin_node=peer_url).count(),
        }
        there = {}
        for kind in ("papers", "models", "datasets"):
            try:
                answer = session.get(
                    f"{peer_url}/api/v1/{kind}/", params={"origin": own_url}, timeout=30
                )
                there[kind] = answer.json().get("count", "?")
            except (requests.RequestException, ValueError, client.FederationError):
                there[kind] = "?"
        self.stdout.write(
            f"Federation: this node mirrors {here} from {peer_url}; "
            f"{peer_url} mirrors {there} from this node."
        )
