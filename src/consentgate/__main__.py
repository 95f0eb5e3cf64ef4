"""``python -m consentgate``: the same as the ``consentgate`` command."""

from consentgate.cli import main

main()
