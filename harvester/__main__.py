"""``python -m harvester`` is the ``harvester`` console script."""

from harvester.cli import main

raise SystemExit(main())
