"""The `python -m engine ...` subcommands (engine.commands.cli is the parser)."""
