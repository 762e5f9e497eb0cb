"""One module per ``palaeo-ssl`` subcommand; each provides ``register(subparsers)``."""
