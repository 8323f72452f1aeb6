import sys

from raftflow.cluster.cli.main import main

sys.exit(main())
