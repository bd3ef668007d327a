"""``python -m jaxpick`` runs the command line."""

import sys

from jaxpick.cli.main import main

sys.exit(main())
