"""Seeds the catalogue benchmark's database: 100,000 papers and 20,000 models by default.

    .venv/bin/python bench/seed_catalog.py            # creates, migrates and seeds once
    .venv/bin/python bench/seed_catalog.py --reset    # drops the database and seeds again

Text comes from a seeded RNG over a Zipf-distributed vocabulary (a few hundred real research
words, then invented ones), so search terms range from "in nearly every paper" to "in a handful":
`vocabulary()` and `codename()` are what the load script builds its queries from.
"""

import argparse
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg import sql  # noqa: E402

from apps.accounts.models import Institution, Membership, User  # noqa: E402
from apps.catalog.models import (  # noqa: E402
    Artifact,
    Benchmark,
    Dataset,
    ModelFile,
    ModelVersion,
    Paper,
    PaperAuthor,
    ResearchModel,
    Tag,
    Visibility,
)

SEED = 20240601
PAPERS = 100_000
MODELS = 20_000
DATASETS = 200
BENCHMARKS = 100
USERS_PER_INSTITUTION = 10
BATCH = 5_000
# The authenticated load client: a plain member of the first institution.
READER_USERNAME = "bench-reader"
CODENAMES = 20_000

INSTITUTIONS = [
    ("bench-northbridge", "Northbridge University, Machine Learning Group", "GB"),
    ("bench-rheinau", "Technische Hochschule Rheinau, Institute for AI", "DE"),
    ("bench-lakeshore", "Lakeshore Institute of Technology, NLP Lab", "US"),
]

# Ordered roughly from most to least frequent in real abstracts: rank decides frequency.
RESEARCH_TEXT = """
model learning data neural network training results performance method approach task
deep language models propose show large representation dataset tasks evaluation based
paper methods transformer attention benchmark accuracy state art existing framework novel
using image text prediction generation features problem information structure fine tuning
pretrained inference graph knowledge semantic multiple different experiments analysis
efficient scale quality robust optimization loss function parameters input output layer
classification detection segmentation vision visual retrieval reasoning question answering
generalization domain adaptation transfer supervised unsupervised reinforcement policy agent
reward embedding embeddings encoder decoder sequence token tokens context memory compute
latency throughput sparse dense mixture experts distillation pruning quantization compression
contrastive objective regularization variance bias fairness privacy federated distributed
parallel hardware gpu memory efficient scaling laws emergent capabilities instruction
alignment preference feedback human annotation labels noisy synthetic augmentation sampling
diffusion generative adversarial autoencoder variational latent space manifold geometry
convolutional recurrent spectral kernel gaussian process bayesian uncertainty calibration
causal counterfactual interpretability explanation attribution probing circuits mechanistic
speech audio music video temporal spatial point cloud molecule protein chemistry physics
climate weather medical clinical biology genomics materials robotics control planning search
tree retrieval augmented multilingual translation summarization dialogue conversational
code program synthesis theorem proving mathematics arithmetic logic symbolic neurosymbolic
curriculum continual lifelong catastrophic forgetting meta few shot zero prompt prompting
chain thought verification hallucination factuality toxicity safety jailbreak adversarial
robustness certified perturbation attack defense watermark membership leakage unlearning
"""

FIRST_NAMES_TEXT = """
Ada Tomas Lena Ravi Maria Wei Yuki Amara Jonas Sofia Mateo Priya Noah Chen Fatima Lucas Elena
Omar Hana Diego Ingrid Kwame Mei Arjun Clara Felix Aisha Pablo Nora Hugo Leila Sven Zara Ivan
Rosa Kenji Olga Samuel Nadia Erik Lucia Tariq Greta Ming Inés Viktor Amina Paulo Freya Dmitri
"""
LAST_NAMES_TEXT = """
Okafor Lindqvist Brandt Menon Delgado Zhang Tanaka Mensah Keller Rossi Garcia Sharma Wilson Li
Haddad Martin Petrova Novak Kim Fernandez Larsen Asante Wang Gupta Schmidt Weber Bello Ruiz
Moreau Hoffmann Nasser Johansson Ahmed Volkov Silva Sato Ivanova Cohen Popescu Nielsen Romano
Khan Bauer Liu Lopez Kowalski Costa Berg Yamamoto Mendes Fischer Dubois Andersen Park Rahman
"""
VENUES_TEXT = """
NeurIPS ICML ICLR ACL EMNLP NAACL CVPR ICCV ECCV AAAI IJCAI KDD SIGIR TMLR JMLR COLM arXiv
"""
RESEARCH_WORDS = RESEARCH_TEXT.split()
FIRST_NAMES = FIRST_NAMES_TEXT.split()
LAST_NAMES = LAST_NAMES_TEXT.split()
VENUES = VENUES_TEXT.split()
TASKS = [
    "image-classification",
    "text-classification",
    "text-generation",
    "translation",
    "summarization",
    "question-answering",
    "object-detection",
    "speech-recognition",
    "embedding",
    "tabular-regression",
]
LICENSES = ["MIT", "Apache-2.0", "CC-BY-4.0", "BSD-3-Clause", "CC-BY-NC-4.0"]
STOPWORDS = ["the", "of", "and", "a", "in", "to", "we", "for", "with", "on", "that", "is"]
SIZES = ["tiny", "small", "base", "large", "xl"]


def vocabulary() -> list[str]:
    """The research words, then 6,000 invented words; index = frequency rank."""
    rng = random.Random(SEED)  # noqa: S311
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    words = list(dict.fromkeys(RESEARCH_WORDS))
    seen = set(words)
    while len(words) < len(RESEARCH_WORDS) + 6_000:
        syllables = rng.randint(2, 4)
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
        word += rng.choice(["n", "l", "x", "r", "s"])
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def codename(index: int) -> str:
    """A method name that titles use ("Velkorax: ..."): each is shared by about 5 papers."""
    rng = random.Random(SEED * 31 + index)  # noqa: S311
    letters = "bdfgklmnprstvz"
    return "".join(rng.choice(letters) + rng.choice("aeiou") for _ in range(4)) + "x"


class TextMaker:
    """Zipf (s = 1) over the vocabulary, drawn with cumulative weights: fast enough for
    15 million words."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = vocabulary()
        weights = [1 / (rank + 1) for rank in range(len(self.words))]
        total = 0.0
        self.cumulative: list[float] = []
        for weight in weights:
            total += weight
            self.cumulative.append(total)

    def words_for(self, count: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=count)

    def sentence(self, count: int) -> str:
        words = self.words_for(count)
        # Stopwords make the text read like prose; the english search config drops them.
        for position in range(1, len(words), 3):
            words[position] = f"{self.rng.choice(STOPWORDS)} {words[position]}"
        return " ".join(words).capitalize() + "."

    def title(self) -> str:
        words = " ".join(self.words_for(self.rng.randint(5, 10))).capitalize()
        if self.rng.random() < 0.5:
            name = codename(self.rng.randrange(CODENAMES)).capitalize()
            return f"{name}: {words}"
        return words

    def abstract(self) -> str:
        return " ".join(self.sentence(self.rng.randint(12, 22)) for _ in range(8))


def visibility_draw(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.90:
        return Visibility.PUBLIC
    if roll < 0.95:
        return Visibility.INSTITUTION
    return Visibility.PRIVATE


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _maintenance_connection() -> psycopg.Connection:
    database = settings.DATABASES["default"]
    return psycopg.connect(
        host=database["HOST"] or None,
        port=database["PORT"] or None,
        user=database["USER"] or None,
        password=database["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


def database_prepare(*, reset: bool) -> None:
    name = settings.DATABASES["default"]["NAME"]
    with _maintenance_connection() as maintenance:
        exists = maintenance.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if exists and reset:
            print(f"Dropping {name}")
            maintenance.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )
            exists = None
        if not exists:
            print(f"Creating {name}")
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    call_command("migrate", verbosity=0, interactive=False)


def _people(rng: random.Random) -> tuple[list[Institution], dict[int, list[User]]]:
    institutions = Institution.objects.bulk_create(
        Institution(slug=slug, name=name, country=country) for slug, name, country in INSTITUTIONS
    )
    unusable = make_password(None)
    users = [User(username=READER_USERNAME, password=unusable, email="reader@bench.example")]
    for institution in institutions:
        for number in range(USERS_PER_INSTITUTION):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            users.append(
                User(
                    username=f"{institution.slug}-{number}",
                    first_name=first,
                    last_name=last,
                    email=f"{number}@{institution.slug}.example",
                    password=unusable,
                )
            )
    users = User.objects.bulk_create(users)
    reader, researchers = users[0], users[1:]
    members: dict[int, list[User]] = {}
    memberships = [Membership(user=reader, institution=institutions[0])]
    for index, user in enumerate(researchers):
        institution = institutions[index // USERS_PER_INSTITUTION]
        role = Membership.Role.ADMIN if index % USERS_PER_INSTITUTION == 0 else "member"
        memberships.append(Membership(user=user, institution=institution, role=role))
        members.setdefault(institution.pk, []).append(user)
    Membership.objects.bulk_create(memberships)
    return institutions, members


def _datasets_and_benchmarks(
    rng: random.Random,
    text: TextMaker,
    institutions: list[Institution],
    members: dict[int, list[User]],
    tags: list[Tag],
) -> list[Benchmark]:
    datasets = []
    for number in range(DATASETS):
        institution = rng.choice(institutions)
        datasets.append(
            Dataset(
                institution=institution,
                created_by=rng.choice(members[institution.pk]),
                visibility=visibility_draw(rng),
                name=f"{text.words_for(1)[0].capitalize()}-{number}",
                slug=f"dataset-{number}",
                description=text.abstract(),
                license=rng.choice(LICENSES),
            )
        )
    datasets = Dataset.objects.bulk_create(datasets)
    Dataset.tags.through.objects.bulk_create(
        Dataset.tags.through(dataset_id=dataset.pk, tag_id=tag.pk)
        for dataset in datasets
        for tag in rng.sample(tags, 2)
    )
    benchmarks = []
    for number in range(BENCHMARKS):
        dataset = rng.choice(datasets)
        benchmarks.append(
            Benchmark(
                institution=dataset.institution,
                created_by=dataset.created_by,
                visibility=visibility_draw(rng),
                name=f"{dataset.name} {rng.choice(TASKS)} {number}",
                slug=f"benchmark-{number}",
                description=text.sentence(40),
                task_type=rng.choice(TASKS),
                dataset=dataset,
                metrics=[{"name": "accuracy", "higher_is_better": True}],
                evaluator="onnx-classification",
            )
        )
    return Benchmark.objects.bulk_create(benchmarks)


def _papers(
    rng: random.Random,
    text: TextMaker,
    institutions: list[Institution],
    members: dict[int, list[User]],
    count: int,
) -> list[int]:
    paper_ids: list[int] = []
    for start in range(0, count, BATCH):
        papers: list[Paper] = []
        authors: list[list[str]] = []
        for number in range(start, min(start + BATCH, count)):
            institution = rng.choice(institutions)
            names = [
                f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                for _ in range(rng.randint(1, 6))
            ]
            authors.append(names)
            papers.append(
                Paper(
                    institution=institution,
                    created_by=rng.choice(members[institution.pk]),
                    visibility=visibility_draw(rng),
                    title=text.title(),
                    abstract=text.abstract(),
                    # What services._set_authors keeps in step with the author rows.
                    author_names=", ".join(names),
                    venue=rng.choice(VENUES),
                    year=rng.randint(1995, 2025),
                    doi=f"10.5555/bench.{number}" if rng.random() < 0.6 else "",
                    arxiv_id=f"{rng.randint(1501, 2412)}.{number:05d}"
                    if rng.random() < 0.4
                    else "",
                )
            )
        papers = Paper.objects.bulk_create(papers)
        PaperAuthor.objects.bulk_create(
            PaperAuthor(paper=paper, position=position, name=name)
            for paper, names in zip(papers, authors, strict=True)
            for position, name in enumerate(names)
        )
        paper_ids.extend(paper.pk for paper in papers)
        print(f"  papers: {len(paper_ids):,}", end="\r", flush=True)
    print()
    return paper_ids


def _models(
    rng: random.Random,
    text: TextMaker,
    institutions: list[Institution],
    members: dict[int, list[User]],
    tags: list[Tag],
    paper_ids: list[int],
    benchmarks: list[Benchmark],
    count: int,
) -> None:
    artifact = Artifact.objects.create(
        sha256="0" * 63 + "1",
        size=4_194_304,
        format="onnx",
        format_info={"opset": 17},
        storage_name="bench/shared.onnx",
    )
    published = timezone.now() - timedelta(days=1)
    done = 0
    for start in range(0, count, BATCH):
        models = []
        for number in range(start, min(start + BATCH, count)):
            institution = rng.choice(institutions)
            name = f"{codename(rng.randrange(CODENAMES))}-{rng.choice(SIZES)}"
            models.append(
                ResearchModel(
                    institution=institution,
                    created_by=rng.choice(members[institution.pk]),
                    visibility=visibility_draw(rng),
                    name=name,
                    slug=f"{name}-{number}",
                    summary=text.sentence(rng.randint(10, 20)),
                    card=f"# {name}\n\n{text.abstract()}",
                    license=rng.choice(LICENSES),
                    task=rng.choice(TASKS),
                )
            )
        models = ResearchModel.objects.bulk_create(models)
        versions = ModelVersion.objects.bulk_create(
            ModelVersion(
                model=model,
                label="1.0",
                release_notes="First release.",
                published_at=published,
                created_by=model.created_by,
            )
            for model in models
        )
        ModelFile.objects.bulk_create(
            ModelFile(version=version, artifact=artifact, filename="model.onnx")
            for version in versions
        )
        ResearchModel.tags.through.objects.bulk_create(
            ResearchModel.tags.through(researchmodel_id=model.pk, tag_id=tag.pk)
            for model in models
            for tag in rng.sample(tags, rng.randint(1, 4))
        )
        ResearchModel.papers.through.objects.bulk_create(
            ResearchModel.papers.through(researchmodel_id=model.pk, paper_id=paper_id)
            for model in models
            for paper_id in rng.sample(paper_ids, rng.randint(0, 3))
        )
        ResearchModel.benchmarks.through.objects.bulk_create(
            ResearchModel.benchmarks.through(researchmodel_id=model.pk, benchmark_id=benchmark.pk)
            for model in models
            for benchmark in rng.sample(benchmarks, rng.randint(0, 2))
        )
        done += len(models)
        print(f"  models: {done:,}", end="\r", flush=True)
    print()


def catalog_seed(*, papers: int, models: int) -> None:
    rng = random.Random(SEED)  # noqa: S311
    text = TextMaker(rng)
    with transaction.atomic():
        # One transaction; losing it on a crash costs nothing but a rerun.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        institutions, members = _people(rng)
        tags = Tag.objects.bulk_create(
            Tag(name=f"{word}-{n}") for n, word in enumerate(RESEARCH_WORDS[:60])
        )
        benchmarks = _datasets_and_benchmarks(rng, text, institutions, members, tags)
        paper_ids = _papers(rng, text, institutions, members, papers)
        _models(rng, text, institutions, members, tags, paper_ids, benchmarks, models)
    # Fresh statistics and a set visibility map, as on a node that has been running a while.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reset", action="store_true", help="drop the bench database first")
    parser.add_argument("--papers", type=int, default=PAPERS)
    parser.add_argument("--models", type=int, default=MODELS)
    args = parser.parse_args()

    started = time.perf_counter()
    database_prepare(reset=args.reset)
    if Paper.objects.exists():
        print(
            f"{settings.DATABASES['default']['NAME']} is already seeded "
            f"({Paper.objects.count():,} papers, {ResearchModel.objects.count():,} models); "
            f"--reset seeds it again. ({time.perf_counter() - started:.0f} s)"
        )
        return
    catalog_seed(papers=args.papers, models=args.models)
    print(
        f"Seeded {Paper.objects.count():,} papers, {PaperAuthor.objects.count():,} authors, "
        f"{ResearchModel.objects.count():,} models in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
