"""``python -m clinicflow.cli``: the same command line as ``clinicflow``."""

from clinicflow.cli import main

main()
