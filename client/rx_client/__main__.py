import sys

from rx_client.cli import main

sys.exit(main())
