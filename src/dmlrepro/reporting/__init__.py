"""Reporting helpers shared by the papers: per-run records and mean ± std tables (``tables``),
figure helpers and training curves (``figures``, matplotlib Agg), claims and their verdicts
(``claims``), a self-contained HTML report (``report``). A paper's own tables, figures and
published values live in its package (``papers/<paper>/``).

Sub-modules are imported explicitly (``from dmlrepro.reporting.tables import write_table``) so
that importing the package does not pull in matplotlib.
"""
