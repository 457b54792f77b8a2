"""Stage 9, sweeps: the benchmark at every dial value plus reference targets (run), the sweep folder read in one
place (folder), effects per dial unit (effects), the conclusion by stated rules (conclusion), plots and the report.

Invariant: a report is a pure function of the sweep folder (and the paper's summary tables, read only).
"""
