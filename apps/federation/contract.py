"""What two nodes must agree on, in one place: the protocol's version, its paths, and the shape
of the well-known document and of change-feed records. Both the serving side (feed.py, views)
and the pulling side (sync.py) read these names; a change here is a protocol change."""

PROTOCOL_VERSION = "1"

WELL_KNOWN_PATH = "/.well-known/research-exchange"
PEERING_REQUEST_PATH = "/federation/v1/peering/requests"
PEERING_STATE_PATH = "/federation/v1/peering/state"
FEED_PATH = "/federation/v1/feed"
# Grants: the granting node announces (POST) one; the grantee's node lists (GET) them all.
GRANTS_PATH = "/federation/v1/grants"
# Served by the node that runs evaluations for a peer: ask (POST), follow (GET), cancel.
EVALUATIONS_PATH = "/federation/v1/evaluations"
EVALUATION_PATH = EVALUATIONS_PATH + "/{request_id}"
EVALUATION_CANCEL_PATH = EVALUATION_PATH + "/cancel"
# Served by the node that asked: the job's model files, and the job's outcome (POST).
REQUESTED_PATH = "/federation/v1/requested-evaluations/{request_id}"
REQUESTED_FILE_PATH = REQUESTED_PATH + "/files/{sha256}"
REQUESTED_OUTCOME_PATH = REQUESTED_PATH + "/outcome"

CAPABILITIES = (
    "catalogue-feed",
    "artifacts",
    "oai-pmh",
    "datacite",
    "croissant",
    "signed-results",
    "remote-evaluation",
)

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

# A reference to a record of any node: {"node": its origin node's id, "id": its id there}.
# A node reads a reference to itself as its own record, any other as its mirror of it.

# A remote evaluation's states, as the node that runs it reports them.
EVALUATION_STATES = (
    "preparing",
    "pending",
    "dispatched",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
)
EVALUATION_FINISHED_STATES = ("succeeded", "failed", "cancelled", "timed_out")
# Signed usage records: an in-toto Statement of this type, in a DSSE envelope.
USAGE_PREDICATE_TYPE = "https://research-exchange.org/attestations/gpu-usage/v1"
