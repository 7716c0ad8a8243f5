"""The demo node's catalogue: well-known papers, a sentence-similarity dataset and benchmark, the
all-MiniLM-L6-v2 encoder as ONNX, and two small encoder heads, published through the services
like any researcher's."""

import json
import random
import struct
import tempfile
from pathlib import Path
from typing import Any

from apps.accounts.models import Institution, User
from apps.catalog import services
from apps.catalog.models import Paper, ResearchModel, Visibility
from apps.catalog.uploads import uploaded_file_from_bytes
from apps.evaluations.samples import sentences

PAPERS: list[dict[str, Any]] = [
    {
        "key": "vaswani2017attention",
        "title": "Attention Is All You Need",
        "authors": ["Ashish Vaswani", "Noam Shazeer", "Niki Parmar", "Jakob Uszkoreit"],
        "venue": "Advances in Neural Information Processing Systems",
        "year": 2017,
        "doi": "10.48550/arXiv.1706.03762",
        "arxiv_id": "1706.03762",
        "abstract": (
            "The dominant sequence transduction models are based on complex recurrent or "
            "convolutional neural networks. We propose a new simple network architecture, the "
            "Transformer, based solely on attention mechanisms."
        ),
    },
    {
        "key": "reimers2019sentence",
        "title": "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
        "authors": ["Nils Reimers", "Iryna Gurevych"],
        "venue": "Proceedings of EMNLP-IJCNLP 2019",
        "year": 2019,
        "doi": "10.18653/v1/D19-1410",
        "arxiv_id": "1908.10084",
        "abstract": (
            "Sentence-BERT uses siamese and triplet network structures to derive semantically "
            "meaningful sentence embeddings that can be compared using cosine similarity."
        ),
    },
    {
        "key": "lecun2015deep",
        "title": "Deep learning",
        "authors": ["Yann LeCun", "Yoshua Bengio", "Geoffrey Hinton"],
        "venue": "Nature",
        "year": 2015,
        "doi": "10.1038/nature14539",
        "arxiv_id": "",
        "abstract": (
            "Deep learning allows computational models that are composed of multiple processing "
            "layers to learn representations of data with multiple levels of abstraction."
        ),
    },
]

MINILM_SLUG = "all-minilm-l6-v2-int8"
MINILM_CARD = """# all-MiniLM-L6-v2 (int8 ONNX)

Sentence-Transformers' all-MiniLM-L6-v2 encoder exported to ONNX with int8 weights. Feed
`input_ids`, `attention_mask` and `token_type_ids` from its WordPiece tokenizer; mean-pool
`last_hidden_state` over the attention mask for a 384-dimensional sentence embedding.

## Intended use
Semantic similarity and search; evaluated here on the Everyday STS benchmark.
"""

MODEL_CARD = """# {name}

{summary}

## Intended use
Research comparisons on the node's sentence-similarity benchmark.

## Files
`model.safetensors`: the encoder's projection weights ({rows} x {cols}, float32).

## Limitations
Demo weights: small, and not trained for production use.
"""


def _weights(rows: int, cols: int, seed: int) -> bytes:
    """A safetensors file with one float32 matrix."""
    rng = random.Random(seed)  # noqa: S311 - demo weights, not secrets
    values = [rng.gauss(0.0, 0.02) for _ in range(rows * cols)]
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "projection.weight": {
                "dtype": "F32",
                "shape": [rows, cols],
                "data_offsets": [0, 4 * rows * cols],
            },
        }
    ).encode()
    header += b" " * (-len(header) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{len(values)}f", *values)


def _store(user: User, content: bytes, name: str):
    return services.artifact_store(user=user, upload=uploaded_file_from_bytes(content, name))


def catalog_demo_load(*, institutions: dict[str, Institution], users: dict[str, User]) -> None:
    """Publishes the demo records that are not there yet (matched by DOI and slug)."""
    rheinau, northbridge = institutions["rheinau-ai"], institutions["northbridge"]
    lena, ada = users["lena"], users["ada"]

    papers = {}
    for entry in PAPERS:
        paper = Paper.objects.filter(doi=entry["doi"].lower()).first()
        if paper is None:
            paper = services.paper_create(
                user=lena,
                institution=rheinau,
                title=entry["title"],
                authors=[services.AuthorInput(name=name) for name in entry["authors"]],
                abstract=entry["abstract"],
                venue=entry["venue"],
                year=entry["year"],
                doi=entry["doi"],
                arxiv_id=entry["arxiv_id"],
                bibtex_key=entry["key"],
            )
        papers[entry["key"]] = paper

    if ResearchModel.objects.filter(institution=rheinau, slug=MINILM_SLUG).exists():
        return

    with tempfile.TemporaryDirectory() as folder:
        pairs_path = sentences.write_sts_pairs(Path(folder))
        pairs_file = _store(lena, pairs_path.read_bytes(), pairs_path.name)
    tokenizer = _store(lena, sentences.minilm_tokenizer_path().read_bytes(), "tokenizer.json")
    dataset = services.dataset_create(
        user=lena,
        institution=rheinau,
        name="Everyday sentence similarity (STS scale)",
        slug="everyday-sts",
        license="CC-BY-4.0",
        description=(
            "English sentence pairs with similarity judgements from 0 to 5, and the WordPiece "
            "tokenizer of the MiniLM family (`tokenizer.json`)."
        ),
        tags=["nlp", "sentence-similarity"],
        files=[(pairs_path.name, pairs_file.sha256), ("tokenizer.json", tokenizer.sha256)],
    )
    benchmark = services.benchmark_create(
        user=lena,
        institution=rheinau,
        name="Everyday STS: Spearman correlation",
        slug="everyday-sts-spearman",
        task_type="sentence-similarity",
        dataset=dataset,
        metrics=[{"name": "spearman", "higher_is_better": True}],
        evaluator="embedding-similarity",
        evaluator_config={"pairs_file": pairs_path.name, "tokenizer_file": "tokenizer.json"},
        description="Cosine similarity of sentence embeddings against the gold scores.",
        time_limit_minutes=10,
        tags=["nlp"],
    )
    papers["reimers2019sentence"].benchmarks.add(benchmark)

    minilm = services.model_create(
        user=lena,
        institution=rheinau,
        name="all-MiniLM-L6-v2 (int8 ONNX)",
        slug=MINILM_SLUG,
        summary="A six-layer sentence encoder (384 dimensions), quantised to int8 for CPUs.",
        card=MINILM_CARD,
        license="Apache-2.0",
        task="sentence-similarity",
        tags=["nlp", "embeddings", "onnx"],
        paper_ids=[papers["reimers2019sentence"].pk],
        benchmark_ids=[benchmark.pk],
    )
    encoder = _store(lena, sentences.minilm_model_path().read_bytes(), "model.onnx")
    services.version_create(
        user=lena,
        model=minilm,
        label="1.0",
        release_notes="int8 weights, ONNX opset of the export.",
        files=[("model.onnx", encoder.sha256)],
        publish=True,
    )

    for user, institution, slug, name, summary, visibility, seed in [
        (
            ada, northbridge, "tiny-encoder", "Tiny sentence encoder",
            "A compact encoder head for on-device similarity search.", Visibility.PUBLIC, 2,
        ),
        (
            ada, northbridge, "tiny-encoder-next", "Tiny sentence encoder (next)",
            "Work in progress: shared within Northbridge only.", Visibility.INSTITUTION, 3,
        ),
    ]:  # fmt: skip
        model = services.model_create(
            user=user,
            institution=institution,
            name=name,
            slug=slug,
            summary=summary,
            card=MODEL_CARD.format(name=name, summary=summary, rows=128, cols=384),
            license="Apache-2.0",
            task="sentence-similarity",
            visibility=visibility,
            tags=["nlp", "embeddings"],
            paper_ids=[papers["reimers2019sentence"].pk, papers["vaswani2017attention"].pk],
            benchmark_ids=[benchmark.pk],
        )
        weights = _store(user, _weights(128, 384, seed), "model.safetensors")
        services.version_create(
            user=user,
            model=model,
            label="1.0",
            release_notes="First public weights.",
            files=[("model.safetensors", weights.sha256)],
            publish=True,
        )
