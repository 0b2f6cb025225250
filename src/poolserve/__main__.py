"""``python -m poolserve``."""

from poolserve.cli import main

main()
