"""`python -m lassi_batch` = the `lassi-batch` command (for machines where the script is not on PATH)."""

from .cli import main

main(prog_name="lassi-batch")
