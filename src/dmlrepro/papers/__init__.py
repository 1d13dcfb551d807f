"""Papers as plug-ins: each subpackage holds what is specific to one paper (its methods, published
values, claims, tables and figures, commands). Shared rooms below it never import from here.

``COMMAND_MODULES`` lists the packages whose ``commands.register(subparsers)`` the CLI calls.
"""

COMMAND_MODULES = ("dmlrepro.papers.image_foundation.commands", "dmlrepro.papers.ssdml.commands",
                   "dmlrepro.papers.unified_view.commands", "dmlrepro.papers.pl_manifolds.commands")
