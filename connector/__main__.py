"""`python -m connector` is the same as the `hitl-connector` command."""

from .cli import main

raise SystemExit(main())
