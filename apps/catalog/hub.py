"""Published model versions as Hugging Face Hub repositories: what `huggingface_hub` and
`transformers` read from a node when HF_ENDPOINT names it.

- repo id: `<institution slug>/<model slug>`;
- revision: a published version's label, `main` (the latest published version), or a
  version's commit id: 40 hex digits, the sha1 of the version's identity (the model's origin
  node and id, its label) and of its files' names and sha256. A version published at one node
  has the same commit id at every node that mirrors it.
- every file is described as a Git LFS file: its `lfs.oid` is its sha256, its `oid` the Git
  blob id of its LFS pointer, as the Hub gives for large files.

`main` always means the latest published version: a version labelled `main` is reached by its
commit id. Drafts are never served: a draft's label answers like a label that does not exist.
A model the viewer may not see answers like a repository that does not exist (the catalogue's
selectors decide, with the same visibility rules as everywhere else).
"""

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from apps.catalog.models import ModelFile, ModelVersion, Paper, ResearchModel, Visibility
from apps.catalog.selectors import Viewer, model_list, visible_to

MAIN = "main"
COMMIT_ID = re.compile(r"[0-9a-f]{40}")
COMMIT_SCHEME = "research-exchange model version 1"
# The Hub lists at most 1000 entries per tree page.
TREE_PAGE_SIZE = 1000


class HubError(Exception):
    """An answer of the Hub's kind: the HTTP status, the `X-Error-Code` the client reads its
    exception type from, a message, and the commit a missing file was looked up in."""

    def __init__(self, status: int, code: str, message: str, *, commit: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit


@dataclass(frozen=True)
class HubRevision:
    model: ResearchModel
    version: ModelVersion
    commit: str
    files: list[ModelFile]  # by file name

    @property
    def repo_id(self) -> str:
        return repo_id_of(self.model)


def repo_id_of(model: ResearchModel) -> str:
    return f"{model.institution.slug}/{model.slug}"


def version_commit(model: ResearchModel, label: str, files: Iterable[tuple[str, str]]) -> str:
    """The commit id of the version `label` of `model` holding `files`: (file name, sha256)."""
    node = model.origin_node or settings.FEDERATION_NODE_URL
    record = model.origin_id or str(model.pk)
    lines = [COMMIT_SCHEME, f"model {node} {record}", f"version {label}"]
    lines += [f"file {sha256} {filename}" for filename, sha256 in sorted(files)]
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()  # noqa: S324 - an id, as in Git


def hub_model_get(*, user: Viewer, namespace: str, name: str) -> ResearchModel:
    """The model `namespace/name` if `user` may see it; RepoNotFound otherwise, whether it
    does not exist or is hidden from `user`."""
    model = model_list(user=user).filter(institution__slug=namespace, slug=name).first()
    if model is None:
        raise HubError(
            404,
            "RepoNotFound",
            f"Repository {namespace}/{name} not found. If it is not public, send the "
            "personal API token of someone who may see it (HF_TOKEN).",
        )
    return model


def _version_by_commit(
    model: ResearchModel, versions: list[ModelVersion], commit: str
) -> ModelVersion | None:
    """Reads only the names and digests of the files: one light query whatever the versions."""
    digests: dict[int, list[tuple[str, str]]] = defaultdict(list)
    rows = ModelFile.objects.filter(version__in=versions).values_list(
        "version_id", "filename", "artifact__sha256"
    )
    for version_id, filename, sha256 in rows:
        digests[version_id].append((filename, sha256))
    for version in versions:
        if version_commit(model, version.label, digests[version.pk]) == commit:
            return version
    return None


def hub_revision_get(*, user: Viewer, namespace: str, name: str, revision: str) -> HubRevision:
    """`main`, a published version's label, or a published version's commit id."""
    model = hub_model_get(user=user, namespace=namespace, name=name)
    versions = list(
        ModelVersion.objects.filter(model=model, published_at__isnull=False).order_by(
            "-published_at", "-id"
        )
    )
    if not versions:
        raise HubError(404, "RevisionNotFound", f"{namespace}/{name} has no published version yet.")
    if revision == MAIN:
        chosen: ModelVersion | None = versions[0]
    else:
        chosen = next((version for version in versions if version.label == revision), None)
    if chosen is None and COMMIT_ID.fullmatch(revision):
        chosen = _version_by_commit(model, versions, revision)
    if chosen is None:
        raise HubError(
            404,
            "RevisionNotFound",
            f"Revision {revision!r} not found in {namespace}/{name}: ask for a published "
            "version's label, its commit id, or main (the latest published version).",
        )
    files = list(chosen.files.select_related("artifact").order_by("filename"))
    commit = version_commit(
        model, chosen.label, [(file.filename, file.artifact.sha256) for file in files]
    )
    return HubRevision(model, chosen, commit, files)


def hub_file_get(*, revision: HubRevision, filename: str) -> ModelFile:
    for file in revision.files:
        if file.filename == filename:
            return file
    raise HubError(
        404,
        "EntryNotFound",
        f"{filename} is not a file of {revision.repo_id} at version {revision.version.label}.",
        commit=revision.commit,
    )


def hub_timestamp(moment: datetime) -> str:
    """The Hub's one date format, which the client parses strictly: UTC, milliseconds, Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _lfs_pointer_size_and_oid(file: ModelFile) -> tuple[int, str]:
    """The Git LFS pointer a Hub repository would hold for the file, and its Git blob id."""
    pointer = (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{file.artifact.sha256}\nsize {file.artifact.size}\n"
    ).encode()
    blob = b"blob %d\0" % len(pointer) + pointer
    return len(pointer), hashlib.sha1(blob).hexdigest()  # noqa: S324 - Git's blob id


def library_name(files: list[ModelFile]) -> str | None:
    names = {file.filename for file in files}
    formats = {file.artifact.format for file in files}
    if "config.json" in names and formats & {"safetensors", "pickle"}:
        return "transformers"
    for known in ("gguf", "onnx"):
        if known in formats:
            return known
    return None


def _linked_paper_tags(user: Viewer, model: ResearchModel) -> list[str]:
    papers = Paper.objects.filter(visible_to(user), models=model)
    arxiv = papers.exclude(arxiv_id="").values_list("arxiv_id", flat=True)
    return sorted(f"arxiv:{identifier}" for identifier in arxiv)


def model_info(*, user: Viewer, revision: HubRevision) -> dict:
    """The `GET /api/models/{repo}[/revision/{rev}]` answer (`huggingface_hub.ModelInfo`)."""
    model, version, files = revision.model, revision.version, revision.files
    library = library_name(files)
    tags = [tag.name for tag in model.tags.all()]
    card_data: dict = {"license": model.license.lower(), "tags": tags}
    extra_tags = [f"license:{model.license.lower()}", *_linked_paper_tags(user, model)]
    if library:
        card_data["library_name"] = library
        extra_tags.insert(0, library)
    if model.task:
        card_data["pipeline_tag"] = model.task
    siblings = []
    for file in files:
        pointer_size, blob_id = _lfs_pointer_size_and_oid(file)
        size = file.artifact.size
        siblings.append(
            {
                "rfilename": file.filename,
                "size": size,
                "blobId": blob_id,
                "lfs": {"sha256": file.artifact.sha256, "size": size, "pointerSize": pointer_size},
            }
        )
    published = version.published_at or version.created_at  # only published ones are served
    return {
        "id": revision.repo_id,
        "modelId": revision.repo_id,
        "author": model.institution.slug,
        "sha": revision.commit,
        "lastModified": hub_timestamp(published),
        "createdAt": hub_timestamp(model.created_at),
        "private": model.visibility != Visibility.PUBLIC,
        "gated": False,
        "disabled": False,
        "library_name": library,
        "pipeline_tag": model.task or None,
        "tags": sorted(set(tags + extra_tags)),
        "cardData": card_data,
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(file.artifact.size for file in files),
        # What the Hub does not have: which version of the catalogue this commit is.
        "versionLabel": version.label,
        "releaseNotes": version.release_notes,
        "summary": model.summary,
    }


def tree_entries(*, revision: HubRevision, path: str, expand: bool) -> list[dict]:
    """The files under `path` (the repository's root when empty). Our versions hold plain
    file names, so there are no folders to list; a path that names none is EntryNotFound."""
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    files = [file for file in revision.files if file.filename.startswith(prefix)]
    if prefix and not files:
        raise HubError(
            404,
            "EntryNotFound",
            f"{path} is not a folder of {revision.repo_id} at version {revision.version.label}.",
            commit=revision.commit,
        )
    published = revision.version.published_at
    entries = []
    for file in files:
        pointer_size, blob_id = _lfs_pointer_size_and_oid(file)
        size = file.artifact.size
        entry: dict = {
            "type": "file",
            "oid": blob_id,
            "size": size,
            "path": file.filename,
            "lfs": {"oid": file.artifact.sha256, "size": size, "pointerSize": pointer_size},
        }
        if expand and published is not None:
            entry["lastCommit"] = {
                "id": revision.commit,
                "title": f"Version {revision.version.label}",
                "date": hub_timestamp(published),
            }
        entries.append(entry)
    return entries
