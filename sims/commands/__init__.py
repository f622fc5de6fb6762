"""Sub-commands of ``sselab``; each module defines ``register(subparsers)``."""
