"""The `steer` command line (typer) and the demo it runs."""
