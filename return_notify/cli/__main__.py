"""``python -m return_notify.cli``: the same as the ``return-notify`` console script."""

from return_notify.cli.main import main

main()
