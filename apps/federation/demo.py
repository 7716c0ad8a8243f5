"""The demo's second node: another institution with its own papers, a dataset, and models
(one an ONNX digits classifier it evaluates on the first node's GPUs), published through the
services like any researcher's. `make run` starts it beside the first node and peers the two
(management command demo_federation), which also grants the second node's lab GPU-hours of
the first node's pool and sends that evaluation."""

import csv
import io
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.accounts import services as account_services
from apps.accounts.models import Institution, Membership, User
from apps.accounts.services import api_token_create
from apps.catalog import services
from apps.catalog.models import Paper, ResearchModel, Visibility
from apps.catalog.uploads import uploaded_file_from_bytes
from apps.evaluations.samples import digits

PEER_INSTITUTION = {
    "slug": "kestrel-bay-bio",
    "name": "Kestrel Bay University, Computational Biology Lab",
    "country": "NZ",
    "website": "https://compbio.kestrel-bay.example",
    "description": "Protein language models and open benchmarks for biological sequences.",
}

PEER_PAPERS: list[dict[str, Any]] = [
    {
        "title": "Evolutionary-scale prediction of atomic-level protein structure with a "
        "language model",
        "authors": ["Zeming Lin", "Halil Akin", "Roshan Rao", "Alexander Rives"],
        "venue": "Science",
        "year": 2023,
        "doi": "10.1126/science.ade2574",
        "abstract": "Large language models of protein sequences learn structure: ESMFold "
        "predicts atomic-level structure directly from a single sequence.",
    },
    {
        "title": "Highly accurate protein structure prediction with AlphaFold",
        "authors": ["John Jumper", "Richard Evans", "Alexander Pritzel", "Demis Hassabis"],
        "venue": "Nature",
        "year": 2021,
        "doi": "10.1038/s41586-021-03819-2",
        "abstract": "AlphaFold predicts protein structures with atomic accuracy even where no "
        "similar structure is known.",
    },
]

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
TOKEN_FILE = "demo-operator.token"  # noqa: S105 - a file name, not a secret
RESEARCHER_TOKEN_FILE = "demo-researcher.token"  # noqa: S105 - a file name, not a secret
DIGITS_MODEL_SLUG = "kestrel-digits-tree"


def _sequences_csv() -> bytes:
    """Short amino-acid sequences with a made-up solubility label: a small, real CSV file."""
    generator = random.Random(7)  # noqa: S311 - demo data, not a secret
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["sequence", "soluble"])
    for _ in range(200):
        sequence = "".join(generator.choice(RESIDUES) for _ in range(30))
        writer.writerow([sequence, int(sequence.count("K") + sequence.count("E") > 3)])
    return buffer.getvalue().encode()


def peer_node_demo_load(*, password: str) -> tuple[User, Path]:
    """Loads the second node's records (once) and writes its operator's API token to a file of
    its var dir, for the command that peers the two demo nodes. Returns the staff admin and
    the token file."""
    institution = Institution.objects.filter(slug=PEER_INSTITUTION["slug"]).first()
    if institution is None:
        institution = account_services.institution_create(**PEER_INSTITUTION)
    admin, _ = User.objects.get_or_create(
        username="admin",
        defaults={"email": "admin@peer.example", "is_staff": True, "is_superuser": True},
    )
    admin.set_password(password)
    admin.save()
    researcher, _ = User.objects.get_or_create(
        username="kiri", defaults={"first_name": "Kiri", "last_name": "Walker"}
    )
    researcher.set_password(password)
    researcher.save()
    if not Membership.objects.filter(user=researcher, institution=institution).exists():
        account_services.membership_add(
            institution=institution, user=researcher, role=Membership.Role.ADMIN
        )

    if not ResearchModel.objects.filter(institution=institution).exists():
        papers = []
        for entry in PEER_PAPERS:
            paper = Paper.objects.filter(doi=entry["doi"]).first() or services.paper_create(
                user=researcher,
                institution=institution,
                title=entry["title"],
                authors=[services.AuthorInput(name=name) for name in entry["authors"]],
                abstract=entry["abstract"],
                venue=entry["venue"],
                year=entry["year"],
                doi=entry["doi"],
            )
            papers.append(paper)
        services.paper_create(
            user=researcher,
            institution=institution,
            title="Lab notebook: solubility screening, round 3",
            visibility=Visibility.INSTITUTION,
        )
        table = services.artifact_store(
            user=researcher, upload=uploaded_file_from_bytes(_sequences_csv(), "sequences.csv")
        )
        services.dataset_create(
            user=researcher,
            institution=institution,
            name="Short protein sequences with solubility labels",
            slug="protein-solubility-mini",
            license="CC0-1.0",
            description="200 synthetic 30-residue sequences labelled soluble or not.",
            tags=["biology", "proteins"],
            files=[("sequences.csv", table.sha256)],
        )
        model = services.model_create(
            user=researcher,
            institution=institution,
            name="Kestrel protein encoder (tiny)",
            slug="kestrel-protein-encoder",
            summary="A two-layer encoder of amino-acid sequences, for teaching.",
            license="Apache-2.0",
            task="feature-extraction",
            tags=["biology", "proteins"],
            paper_ids=[paper.pk for paper in papers],
        )
        vocabulary = json.dumps({residue: n for n, residue in enumerate(RESIDUES)}).encode()
        weights = services.artifact_store(
            user=researcher, upload=uploaded_file_from_bytes(vocabulary, "vocabulary.json")
        )
        services.version_create(
            user=researcher,
            model=model,
            label="0.1",
            files=[("vocabulary.json", weights.sha256)],
            publish=True,
        )

    if not ResearchModel.objects.filter(slug=DIGITS_MODEL_SLUG, institution=institution).exists():
        _digits_model(researcher, institution)

    _token, secret = api_token_create(user=admin, name="demo peering", scope="read_write")
    token_file = _write_token(TOKEN_FILE, secret)
    _token, secret = api_token_create(user=researcher, name="demo", scope="read_write")
    _write_token(RESEARCHER_TOKEN_FILE, secret)
    return admin, token_file


def _digits_model(researcher: User, institution: Institution) -> None:
    """An ONNX digits classifier of this lab: what it evaluates on the first node's GPUs."""
    with tempfile.TemporaryDirectory() as folder:
        sample = digits.build_digits(Path(folder))
        weights = services.artifact_store(
            user=researcher,
            upload=uploaded_file_from_bytes(sample.weak_model_path.read_bytes(), "model.onnx"),
        )
    model = services.model_create(
        user=researcher,
        institution=institution,
        name="Kestrel digits decision tree (depth 4)",
        slug=DIGITS_MODEL_SLUG,
        summary="A shallow decision tree on scikit-learn's 8x8 digits, exported to ONNX.",
        license="MIT",
        task="image-classification",
        tags=["demo"],
    )
    services.version_create(
        user=researcher, model=model, label="1.0", files=[("model.onnx", weights.sha256)],
        publish=True,
    )  # fmt: skip


def _write_token(name: str, secret: str) -> Path:
    token_file = Path(settings.VAR_DIR) / name
    token_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret)
    return token_file
