"""Across-seed reports of sweeps: runs (``runs``), statistics (``stats``), plots and tables (``tables``)."""
