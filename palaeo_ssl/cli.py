"""The ``palaeo-ssl`` command line.

Each subcommand lives in ``palaeo_ssl.commands.<name>`` and provides
``register(subparsers)`` (adds its parser and sets ``func``). The functions it
calls live in the library; the CLI only parses, calls and summarises.

Exit codes: 0 success, 2 bad usage or bad input (with a one-line message that
says what to do; a value quoted in it keeps its braces, percent signs and quotes,
and shows a line break as ``\n``), 1 an unexpected error, 130 interrupted. A value the library refuses
(:class:`~palaeo_ssl.params.ParameterError`) is reported under its flag, through
the one map :data:`palaeo_ssl.commands.FLAGS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import UserError, one_line
from .params import ParameterError

# Subcommand modules, in the order --help lists them.
COMMANDS = ("demo", "extract", "probe", "classify", "suggest", "morphospace", "similar", "visualise", "run",
            "export")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 2: one line, with a pointer to --help
        self.exit(2, one_line(f"{self.prog}: error: {message} (run '{self.prog} --help' for every option)") + "\n")


#: other names of commands (``visualize``)
ALIASES = {"visualize": "visualise"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. ``command`` None: every command with all its options; a command's name: that
    command with all its options and the others by their one-line help only (their options are
    read from the library's signatures, which imports it: ``palaeo-ssl extract`` need not load
    the probes or the morphospace); ``""``: every command by its help line only (``palaeo-ssl --help``).
    """
    parser = _Parser(
        prog="palaeo-ssl",
        description=(
            "Frozen self-supervised vision models (DINOv3) for fossil images: cached embeddings, "
            "cross-validated probes, morphospace analysis and specimen visualisation."
        ),
    )
    parser.add_argument("--version", action="version", version=f"palaeo-ssl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"palaeo_ssl.commands.{name}")
        if command is None or command == name:
            module.register(sub)
        else:
            sub.add_parser(name, help=module.HELP, aliases=[a for a, n in ALIASES.items() if n == name])
    return parser


def _command_in(argv: list[str]) -> str:
    """The command ``argv`` names ("" when none: only the top-level help is needed)."""
    for token in argv:
        if not token.startswith("-"):
            return ALIASES.get(token, token) if ALIASES.get(token, token) in COMMANDS else ""
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    # huggingface_hub and transformers print their records with their own stderr handlers; passed on to
    # the handler above as well, every line of theirs would appear twice
    for name in ("huggingface_hub", "transformers"):
        logging.getLogger(name).propagate = False
    # the HTTP clients log every request at INFO ("HTTP Request: HEAD ..."): noise at our INFO level
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except ParameterError as exc:  # the library names its parameter; the user typed a flag
        from .commands import flag_for

        print(one_line(f"palaeo-ssl {args.command}: error: {exc.message_for(flag_for(exc.param))}"), file=sys.stderr)
        return 2
    except UserError as exc:
        print(one_line(f"palaeo-ssl {args.command}: error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"palaeo-ssl {args.command}: interrupted; everything already computed is kept on disk.", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
