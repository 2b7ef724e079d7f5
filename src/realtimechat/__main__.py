"""`python -m realtimechat` is the `realtimechat` command."""

import sys

from realtimechat.cli import main

sys.exit(main())
