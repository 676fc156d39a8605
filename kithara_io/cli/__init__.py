"""The command line: ``kithara-io`` (``main.main``) and its subcommands, one module each."""
