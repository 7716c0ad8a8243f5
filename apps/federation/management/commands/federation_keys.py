"""Shows this node's signing keys, or rotates them: the new key signs from then on and the old
one is published as retiring (still accepted) for FEDERATION_KEY_GRACE_SECONDS."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.federation import keys


class Command(BaseCommand):
    help = "List this node's signing keys; --rotate makes a new one."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rotate", action="store_true", help="Make a new signing key.")

    def handle(self, *args, **options) -> None:
        if options["rotate"]:
            try:
                key = keys.node_key_rotate()
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from error
            self.stdout.write(self.style.SUCCESS(f"This node now signs with {key.key_id}."))
        keys.node_key_ensure()
        for key in keys.published_keys():
            state = (
                f"retiring until {key.retiring_until:%Y-%m-%d %H:%M}"
                if key.retiring_until
                else "active"
            )
            self.stdout.write(f"{key.key_id}  {state}  {key.public_key}")
