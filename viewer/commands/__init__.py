"""Sub-commands of the ``casebook`` CLI, one module each, each exposing ``register(subparsers)``."""
