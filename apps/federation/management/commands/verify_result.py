"""Verifies a result's attestation file: with this node's keys when it signed it, with the keys
pinned for the peer that did, or with a key file given (--node-key). The checks are the
standalone verifier's (apps/federation/verifier.py)."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.federation.attestations import verification_keys
from apps.federation.verifier import (
    AttestationInvalid,
    describe,
    keys_from_text,
    predicate_node_id,
    result_predicate,
    result_verify,
    statement_unverified,
)


class Command(BaseCommand):
    help = "Verify a result's attestation (result-<id>.intoto.json) with the signing node's keys."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The attestation: a DSSE envelope as JSON.")
        parser.add_argument(
            "--node-key",
            metavar="FILE",
            help="Verify with this key file instead: a node's well-known document saved as "
            "JSON, one of its keys entries, or a raw base64url public key.",
        )

    def handle(self, *args, **options) -> None:
        try:
            envelope = json.loads(Path(options["file"]).read_text(encoding="utf-8"))
            if options["node_key"]:
                text = Path(options["node_key"]).read_text(encoding="utf-8")
                node_id, public_keys = keys_from_text(text)
            else:
                claimed = statement_unverified(envelope)
                node_id = predicate_node_id(result_predicate(claimed))
                found = verification_keys(node_id=node_id, statement=claimed)
                if found is None:
                    raise CommandError(
                        f"{node_id or 'The signing node'} is neither this node nor a peer: "
                        "give its key with --node-key."
                    )
                public_keys = found
            statement = result_verify(envelope, public_keys, node_id=node_id)
        except OSError as error:
            raise CommandError(f"Cannot read {error.filename}: {error.strerror}.") from error
        except AttestationInvalid as error:
            raise CommandError(f"NOT VERIFIED: {error.reason}") from error
        except ValueError as error:
            raise CommandError("The attestation is not valid JSON.") from error
        self.stdout.write(
            self.style.SUCCESS("VERIFIED: signed by the node that ran the evaluation.")
        )
        for line in describe(statement):
            self.stdout.write(line)
