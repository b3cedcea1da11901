"""`python -m sdc ...` is the same as the `sdc` command."""
from .cli import main

main()
