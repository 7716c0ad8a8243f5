"""Python client of a research-exchange node's REST API, and the `rx` command line.

from rx_client import Client, ApiError
with Client("https://node.example.org", token) as client:
    job = client.job_submit(model_version=12, benchmark=3)
"""

__version__ = "0.1.0"

from rx_client.client import Client
from rx_client.errors import ApiError, ChecksumMismatch, NodeUnreachable, RxError
from rx_client.transfer import download_version, publish_folder

__all__ = [
    "ApiError",
    "ChecksumMismatch",
    "Client",
    "NodeUnreachable",
    "RxError",
    "__version__",
    "download_version",
    "publish_folder",
]
