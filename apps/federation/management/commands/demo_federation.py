"""Peers the two demo nodes that `make run` starts, through the protocol as operators would:
this node's staff asks the other node, the other node's staff approves (through its API), and
each pulls the other's feed at once. Then it reports, every half minute, what each node
mirrors of the other, until it is stopped."""

import time
from pathlib import Path

import requests
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.catalog.models import Dataset, Paper, ResearchModel
from apps.federation import client, services
from apps.federation.models import Peer

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
        while True:
            self._report(session, peer, peer_url, own_url)
            if options["once"]:
                return
            time.sleep(REPORT_EVERY_SECONDS)

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
