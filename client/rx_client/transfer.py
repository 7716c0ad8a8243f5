"""Files in and out of a node: a folder published as a model version, a version's files
downloaded (resumed with Range requests, checked against their sha256)."""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import requests

from rx_client.client import CHUNK_BYTES, JSON, Client, file_sha256
from rx_client.errors import ApiError, ChecksumMismatch, NodeUnreachable, RxError

_REFERENCE = re.compile(r"^(?P<institution>[-\w]+)/(?P<model>[-\w]+)(?:@(?P<label>[\w.+-]+))?$")


class Progress(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


class _Silent:
    def update(self, n: int) -> object:
        return None

    def close(self) -> None:
        return None


# (what, total bytes) -> a progress bar; tqdm fits.
ProgressFactory = Callable[[str, int], Progress]
Notify = Callable[[str], None]


def _no_progress(description: str, total: int) -> Progress:
    return _Silent()


def _quiet(message: str) -> None:
    return None


@dataclass(frozen=True)
class ModelReference:
    """`INSTITUTION/MODEL` or `INSTITUTION/MODEL@LABEL` (slugs and a version label)."""

    institution: str
    model: str
    label: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelReference":
        match = _REFERENCE.match(text.strip())
        if not match:
            raise RxError(
                f"'{text}' is not INSTITUTION/MODEL[@LABEL] (slugs, e.g. northbridge/digits@1.0)"
            )
        return cls(match["institution"], match["model"], match["label"])

    def __str__(self) -> str:
        name = f"{self.institution}/{self.model}"
        return f"{name}@{self.label}" if self.label else name


def resolve_version(client: Client, reference: ModelReference) -> tuple[JSON, JSON]:
    """(model, version) named by `reference`; without a label, the latest published version."""
    model = client.model_find(reference.institution, reference.model)
    name = f"{reference.institution}/{reference.model}"
    if model is None:
        raise RxError(f"no model {name} that you can see on {client.url}")
    label = reference.label or model.get("latest_version")
    if not label:
        raise RxError(f"{name} has no published version yet")
    try:
        version = client.version_get(model["id"], label)
    except ApiError as error:
        if error.status == 404:
            raise RxError(f"{name} has no version {label} that you can see") from error
        raise
    return model, version


@dataclass
class PublishReport:
    model: JSON
    version: JSON
    created_model: bool = False
    uploaded: list[str] = field(default_factory=list)
    already_on_node: list[str] = field(default_factory=list)
    already_published: bool = False


def folder_files(folder: Path) -> list[Path]:
    """The plain files of `folder` that a version would hold; hidden files are left out."""
    if not folder.is_dir():
        raise RxError(f"{folder} is not a folder")
    files, folders = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            folders.append(path.name)
        elif path.is_file():
            files.append(path)
    if folders:
        raise RxError(
            f"{folder} holds folders ({', '.join(folders)}): a model version holds plain files "
            "only; move their files up or out"
        )
    if not files:
        raise RxError(f"{folder} holds no files to publish")
    return files


def publish_folder(
    client: Client,
    folder: Path,
    *,
    institution: str,
    model: str,
    label: str = "1.0",
    name: str | None = None,
    license: str | None = None,
    visibility: str | None = None,
    summary: str = "",
    release_notes: str = "",
    progress: ProgressFactory = _no_progress,
    notify: Notify = _quiet,
) -> PublishReport:
    """Publishes every file of `folder` as version `label` of `institution/model`, creating
    the model when it is missing. Files the node already has (by sha256) are not sent again,
    and a run cut short is finished by running it again: a draft version is completed, and an
    identical published version is left as it is."""
    files = folder_files(folder)
    found = client.model_find(institution, model)
    created = found is None
    if found is None:
        if not license:
            raise RxError(
                f"there is no model {institution}/{model} yet: give its license (an SPDX id, "
                "e.g. --license MIT) to create it"
            )
        found = client.model_create(
            institution=institution,
            slug=model,
            name=name or model,
            license=license,
            visibility=visibility,
            summary=summary,
        )
        notify(f"created model {institution}/{model}")
    existing = next((v for v in found.get("versions", []) if v["label"] == label), None)

    digests: dict[str, str] = {}
    for path in files:
        bar = progress(f"sha256 {path.name}", path.stat().st_size)
        try:
            digests[path.name] = file_sha256(path, bar.update)
        finally:
            bar.close()

    held = {
        item["filename"]: item["artifact"]["sha256"] for item in (existing or {}).get("files", [])
    }
    if existing is not None:
        different = sorted(name for name in held if name in digests and digests[name] != held[name])
        if existing["is_published"]:
            if different or set(held) != set(digests):
                raise RxError(
                    f"version {label} of {institution}/{model} is published with other files; "
                    "publish these as a new version (--version)"
                )
            notify(
                f"version {label} of {institution}/{model} is already published with these files"
            )
            return PublishReport(found, existing, created, already_published=True)
        if different:
            raise RxError(
                f"the draft version {label} of {institution}/{model} holds other files named "
                f"{', '.join(different)}; publish these as a new version (--version)"
            )
        if extra := sorted(set(held) - set(digests)):
            raise RxError(
                f"the draft version {label} of {institution}/{model} also holds "
                f"{', '.join(extra)}, which {folder} does not; publish as a new version (--version)"
            )

    report = PublishReport(found, existing or {}, created)
    for path in files:
        sha256 = digests[path.name]
        if path.name in held:
            continue
        if client.artifact_get(sha256) is not None:
            report.already_on_node.append(path.name)
            notify(f"{path.name}: the node has it already ({sha256[:12]})")
            continue
        bar = progress(path.name, path.stat().st_size)
        try:
            client.artifact_upload(path, sha256=sha256, progress=bar.update)
        finally:
            bar.close()
        report.uploaded.append(path.name)
        notify(f"{path.name}: uploaded ({path.stat().st_size} bytes, sha256 {sha256[:12]})")

    model_id = found["id"]
    if existing is None:
        report.version = client.version_create(
            model_id,
            label=label,
            files=[{"filename": path.name, "sha256": digests[path.name]} for path in files],
            release_notes=release_notes,
            publish=True,
        )
    else:
        for path in files:
            if path.name not in held:
                client.version_add_file(
                    model_id, label, filename=path.name, sha256=digests[path.name]
                )
        report.version = client.version_publish(model_id, label)
    report.model = client.model_get(model_id)
    return report


def download_artifact(
    client: Client,
    *,
    sha256: str,
    size: int,
    target: Path,
    progress: ProgressFactory = _no_progress,
    notify: Notify = _quiet,
) -> str:
    """Downloads the artifact `sha256` to `target` and checks its digest. Bytes arrive in
    `<target>.part`, which a later run (or a retry after a dropped connection) continues with
    a Range request. Returns "present", "downloaded" or "resumed"."""
    if target.is_file() and target.stat().st_size == size and file_sha256(target) == sha256:
        return "present"
    part = target.with_name(target.name + ".part")
    for from_start in (False, True):
        if from_start and part.exists():
            part.unlink()
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        resumed_at = have
        digest = hashlib.sha256()
        if have:
            with part.open("rb") as existing:
                while chunk := existing.read(CHUNK_BYTES):
                    digest.update(chunk)
            notify(f"{target.name}: resuming at {have} of {size} bytes")
        bar = progress(target.name, size)
        bar.update(have)
        try:
            have, digest = _fetch(client, sha256, part, have, size, digest, bar)
        finally:
            bar.close()
        if digest.hexdigest() == sha256:
            part.replace(target)
            return "resumed" if resumed_at else "downloaded"
        if resumed_at and not from_start:
            notify(
                f"{target.name}: the resumed file does not match its sha256; downloading it again"
            )
            continue
        part.unlink()
        raise ChecksumMismatch(target.name, sha256, digest.hexdigest())
    raise AssertionError("unreachable")  # the second pass returns or raises


def _fetch(
    client: Client,
    sha256: str,
    part: Path,
    have: int,
    size: int,
    digest: "hashlib._Hash",
    bar: Progress,
) -> tuple[int, "hashlib._Hash"]:
    """Appends bytes from `have` on to `part` until it holds `size`; a connection lost on the
    way is picked up where it broke, up to the client's retries."""
    url = f"/api/v1/artifacts/{sha256}/download"
    part.touch()
    breaks = 0
    overlong = False
    while have < size:
        headers = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'} if have else {}
        response = client.request("GET", url, headers=headers, stream=True)
        if have and response.status_code != 206:  # the node sends the whole file instead
            have, digest = 0, hashlib.sha256()
            part.write_bytes(b"")
        try:
            with part.open("ab") as out, response:
                for chunk in response.iter_content(CHUNK_BYTES):
                    if have + len(chunk) > size:
                        # Not read on: a node sending without end would fill the disk.
                        overlong = True
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
            breaks += 1
            if breaks > client.retries:
                raise NodeUnreachable(client.url, f"download cut off: {error}") from error
            continue
        if overlong:
            part.unlink()
            raise RxError(
                f"{part.name.removesuffix('.part')}: the node sent more than the {size} bytes it "
                "lists; the file was removed"
            )
        if have < size:
            breaks += 1
            if breaks > client.retries:
                raise NodeUnreachable(client.url, "download cut off before its end")
    return have, digest


def download_version(
    client: Client,
    reference: ModelReference,
    dest: Path,
    *,
    progress: ProgressFactory = _no_progress,
    notify: Notify = _quiet,
) -> dict[str, str]:
    """Every file of the version `reference` names, into `dest`: {filename: outcome}."""
    _model, version = resolve_version(client, reference)
    dest.mkdir(parents=True, exist_ok=True)
    outcomes = {}
    for item in version["files"]:
        if Path(item["filename"]).name != item["filename"] or item["filename"] in ("", ".", ".."):
            raise RxError(f"the node lists a file named {item['filename']!r}: not a plain name")
        artifact = item["artifact"]
        outcomes[item["filename"]] = download_artifact(
            client,
            sha256=artifact["sha256"],
            size=artifact["size"],
            target=dest / item["filename"],
            progress=progress,
            notify=notify,
        )
    return outcomes
