"""``python -m criproxy`` is the same as the ``criproxy`` console script."""

from criproxy.cli import main

raise SystemExit(main())
