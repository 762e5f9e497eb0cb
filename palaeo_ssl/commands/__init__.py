"""One module per ``palaeo-ssl`` subcommand; each provides ``register(subparsers)``.

A command parses, calls one library function and prints. The options that
several commands share, and the one map from Python parameter names to flags
(:data:`FLAGS`), are in :mod:`.options`.
"""

from .options import FLAGS, flag_for


def comma_list(cast, what: str):
    """An argparse ``type`` for "a,b,c": a non-empty list of ``cast`` values (``what`` names them in errors)."""
    import argparse

    def parse(text: str) -> list:
        try:
            values = [cast(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        return values

    return parse


__all__ = ["FLAGS", "comma_list", "flag_for"]
