"""`python -m regionkit` is the `regionkit` command."""

import sys

from regionkit.cli import main

sys.exit(main())
