"""``python -m sdc``: the same as the ``sdc`` command."""
from sdc.cli.main import run

run()
