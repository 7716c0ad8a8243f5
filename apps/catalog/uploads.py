"""Streaming uploads: every file goes to a temporary file on disk in chunks, its sha256 computed
on the way, and an upload over ARTIFACT_MAX_BYTES stops at the limit instead of filling the disk.
"""

import hashlib

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.template.defaultfilters import filesizeformat
from rest_framework.exceptions import APIException

# Room for the multipart boundaries and the other form fields around a file at the limit.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


class ArtifactTooLarge(APIException):
    status_code = 413
    default_code = "too_large"

    def __init__(self) -> None:
        limit = settings.ARTIFACT_MAX_BYTES
        super().__init__(
            f"The upload is larger than this node's limit of {filesizeformat(limit)} "
            f"({limit} bytes); nothing was stored."
        )


class HashingUploadHandler(TemporaryFileUploadHandler):
    chunk_size = 1024 * 1024

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > settings.ARTIFACT_MAX_BYTES + (
            MULTIPART_OVERHEAD_BYTES
        ):
            raise ArtifactTooLarge()

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.digest = hashlib.sha256()
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.received += len(raw_data)
        if self.received > settings.ARTIFACT_MAX_BYTES:
            self.file.close()  # deletes the temporary file
            raise ArtifactTooLarge()
        self.digest.update(raw_data)
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> TemporaryUploadedFile:
        self.file.seek(0)
        self.file.size = file_size
        self.file.sha256 = self.digest.hexdigest()  # type: ignore[attr-defined]
        return self.file


def uploaded_file_from_bytes(content: bytes, name: str) -> TemporaryUploadedFile:
    """Bytes made on the node (demo data, imports) in the shape an upload arrives in."""
    file = TemporaryUploadedFile(name, "application/octet-stream", len(content), None)
    file.write(content)
    file.flush()
    file.seek(0)
    file.sha256 = hashlib.sha256(content).hexdigest()  # type: ignore[attr-defined]
    return file
