"""`python -m core.reproduce`."""
from core.reproduce.cli import main

raise SystemExit(main())
