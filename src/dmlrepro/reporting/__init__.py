"""Reporting: the paper's published numbers (``paper_values``), ours-vs-paper tables
(``tables``), figures (``figures``, matplotlib Agg) and a self-contained HTML report (``report``).

Sub-modules are imported explicitly (``from dmlrepro.reporting.tables import build_table1``) so
that importing the package does not pull in matplotlib.
"""
