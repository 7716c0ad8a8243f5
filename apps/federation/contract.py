"""What two nodes must agree on, in one place: the protocol's version, its paths, and the shape
of the well-known document and of change-feed records. Both the serving side (feed.py, views)
and the pulling side (sync.py) read these names; a change here is a protocol change."""

PROTOCOL_VERSION = "1"

WELL_KNOWN_PATH = "/.well-known/research-exchange"
PEERING_REQUEST_PATH = "/federation/v1/peering/requests"
PEERING_STATE_PATH = "/federation/v1/peering/state"
FEED_PATH = "/federation/v1/feed"

CAPABILITIES = ("catalogue-feed", "artifacts", "oai-pmh", "datacite", "croissant")

SIGNATURE_LABEL = "rx"
# The components every signed request covers (RFC 9421), besides `created`, `expires`, `nonce`.
REQUEST_COMPONENTS = ("@method", "@target-uri", "@authority", "content-digest")
# A signed answer covers its status and body, and the nonce of the request it answers.
RESPONSE_COMPONENTS = ("@status", "content-digest", "x-request-nonce")

# Record types of the change feed, in the order a page is applied: what a record refers to
# comes before it.
RECORD_TYPES = ("institution", "dataset", "benchmark", "paper", "model", "result")

# A feed record: {"type", "id", "seq", "op": "upsert" | "delete", "url", "data"}; a tombstone
# ("delete") has no data. The page: {"records": [...], "next_cursor", "has_more"}.
OP_UPSERT = "upsert"
OP_DELETE = "delete"
