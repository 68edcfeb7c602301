"""``python -m harvester`` is the ``harvester`` console script."""

from harvester.entry import main

raise SystemExit(main())
