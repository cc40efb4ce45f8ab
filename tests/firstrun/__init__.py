"""A new user's first run (issue 14, item 4): the `make run` banner and quiet idle log, `watch`
printing the workflow's answer, `python -m athena.cli --help`, and `?wait=true` keeping its own
parameters out of the trigger's `query`."""
