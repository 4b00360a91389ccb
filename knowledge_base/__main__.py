"""``python -m knowledge_base``: see :mod:`knowledge_base.cli`."""

from knowledge_base.cli import main

raise SystemExit(main())
