"""The checker's libraries, asked for first: a missing one names the ``check`` extra.

numpy belongs to two extras (``check`` and ``sim``), so the module that happens to
import it first would otherwise decide which install line a user is shown.
"""

from sims.extras import require

require("check", "networkx", "scipy", "numpy")
