"""dmlrepro: reproducible deep metric learning for pointsets and images.

Sub-packages: ``data`` (datasets, pointsets, splits), ``ot`` (EMD, RWMD, WCD),
``miners`` (pseudo-labels, triplets), ``losses``, ``models``, ``training``,
``evaluation``, ``reporting``; ``cli`` is the entry point the workflow calls.
"""

__version__ = "0.1.0"


class DmlReproError(Exception):
    """An error a user can act on: the message names the file, key or value at fault."""
