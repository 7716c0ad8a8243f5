"""Loads the demo node: institutions, researchers, a staff admin, a catalogue of papers,
models, datasets and benchmarks, and a compute pool with one CPU node for the local worker.
Safe to run repeatedly: records are matched by slug, DOI and username, every demo password is
reset to one new value, and the demo node gets a new token."""

import os
import secrets
import shutil

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts import services
from apps.accounts.models import Institution, Membership, User
from apps.catalog.demo import catalog_demo_load
from apps.compute.demo import DEMO_NODE, compute_demo_load
from apps.evaluations.demo import evaluations_demo_load
from apps.federation.demo import peer_node_demo_load

INSTITUTIONS = [
    {
        "slug": "northbridge",
        "name": "Northbridge University, Machine Learning Group",
        "country": "GB",
        "website": "https://ml.northbridge.example",
        "description": "Efficient vision models and reproducible benchmarks.",
    },
    {
        "slug": "rheinau-ai",
        "name": "Technische Hochschule Rheinau, Institute for AI",
        "country": "DE",
        "website": "https://ai.th-rheinau.example",
        "description": "Multilingual language models and sentence embeddings.",
    },
    {
        "slug": "lakeshore-nlp",
        "name": "Lakeshore Institute of Technology, NLP Lab",
        "country": "US",
        "website": "https://nlp.lakeshore.example",
        "description": "Evaluation methodology for language models; contributes 8 GPUs.",
    },
]

# username, first, last, ORCID iD (ORCID's documented test record), institution, role
RESEARCHERS = [
    ("ada", "Ada", "Okafor", "0000-0002-1825-0097", "northbridge", Membership.Role.ADMIN),
    ("tomas", "Tomás", "Lindqvist", "", "northbridge", Membership.Role.MEMBER),
    ("lena", "Lena", "Brandt", "", "rheinau-ai", Membership.Role.ADMIN),
    ("ravi", "Ravi", "Menon", "", "rheinau-ai", Membership.Role.MEMBER),
    ("maria", "María", "Delgado", "", "lakeshore-nlp", Membership.Role.ADMIN),
]


class Command(BaseCommand):
    help = "Load the demo institutions, researchers, admin account and catalogue; print logins."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--peer-node",
            action="store_true",
            help="Load the second demo node instead (another institution and its records).",
        )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        if options["peer_node"]:
            admin, token_file = peer_node_demo_load(password=password)
            self.stdout.write(self.style.SUCCESS("Peer node demo data loaded."))
            self.stdout.write(f"  Peer node staff admin: admin / {password}")
            self.stdout.write(f"  Its operator API token is in {token_file}")
            return

        institutions = {}
        for fields in INSTITUTIONS:
            institution = Institution.objects.filter(slug=fields["slug"]).first()
            if institution is None:
                institution = services.institution_create(**fields)
            institutions[fields["slug"]] = institution

        admin, _ = User.objects.get_or_create(
            username="admin",
            defaults={"email": "admin@node.example", "is_staff": True, "is_superuser": True},
        )
        admin.set_password(password)
        admin.save()

        users = {}
        for username, first, last, orcid, slug, role in RESEARCHERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@example.org",
                },
            )
            if created and orcid:
                services.user_profile_update(user=user, orcid=orcid)
            user.set_password(password)
            user.save()
            if not Membership.objects.filter(user=user, institution=institutions[slug]).exists():
                services.membership_add(institution=institutions[slug], user=user, role=role)
            users[username] = user

        catalog_demo_load(institutions=institutions, users=users)
        web_url = f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}"
        worker_env = compute_demo_load(
            institutions=institutions, users=users, admin=admin, web_url=web_url
        )
        evaluations_demo_load(institutions=institutions, users=users)
        isolation_note = self._without_bubblewrap()

        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(f"  Staff admin:  admin / {password}")
        for username, _first, _last, _orcid, slug, role in RESEARCHERS:
            self.stdout.write(f"  Researcher:   {username} / {password}  ({role} of {slug})")
        self.stdout.write(
            f"  Local worker: node '{DEMO_NODE}' of lakeshore-nlp, settings in {worker_env}"
        )
        self.stdout.write(
            "  Hugging Face clients read this node's public models, e.g.:\n"
            f'    HF_ENDPOINT={web_url} .venv/bin/python -c "from transformers import pipeline; '
            "print(pipeline('text-generation', 'lakeshore-nlp/tiny-gpt2-random')"
            "('The sun', max_new_tokens=5))\""
        )
        self.stdout.write(
            f"  Command line: .venv/bin/rx login --url {web_url}  (a personal API token from "
            f"{web_url}/account/tokens/), then .venv/bin/rx --help"
        )
        if isolation_note:
            self.stdout.write(self.style.WARNING(isolation_note))

    @staticmethod
    def _without_bubblewrap() -> str:
        """The local worker isolates evaluations fully only under bubblewrap; without it, it
        runs none of the demo's jobs (partial isolation leaves the host's files readable)."""
        if shutil.which("bwrap"):
            return ""
        return (
            "  bubblewrap is not installed: the local worker cannot fully isolate evaluations "
            "and will run none of the demo's jobs (apt-get install bubblewrap, then restart)."
        )
