"""`python -m raftflow ...` is the `raftflow` command."""

import sys

from raftflow.cluster.cli.main import main

sys.exit(main())
