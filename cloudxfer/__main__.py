"""``python -m cloudxfer`` runs the ``cloudxfer`` command."""

from cloudxfer.cli import main

raise SystemExit(main())
