"""`python -m imageq.cli`: the same as the `imageq` command."""

from imageq.cli.main import main

main()
