"""`python -m sidecar`: the same as the `shutdown-coordinator` console script."""

from sidecar.cli import main

raise SystemExit(main())
