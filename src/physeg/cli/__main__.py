"""``python -m physeg.cli``: the ``physeg`` command."""

from . import main

main()
