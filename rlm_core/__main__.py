"""``python -m rlm_core``: the ``rlm`` command line."""

from rlm_core.cli.app import main

raise SystemExit(main())
