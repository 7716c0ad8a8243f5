#!/usr/bin/env python
"""Django's command-line entry point for the research-exchange node."""

import os
import sys
from pathlib import Path

# platform/ is a plain folder (never a package, so the standard library's `platform` module
# keeps working); the project package `config` lives inside it.
sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
