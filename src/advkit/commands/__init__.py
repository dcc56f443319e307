"""CLI subcommands: each module defines ``add_parser(subparsers)`` that registers one subcommand
and sets ``handler=run`` on its parser; ``advkit.cli`` collects them in ``COMMAND_MODULES``."""
