"""recon: capture batches and reconciliation workbooks for the Financial Line gateway."""

__version__ = "0.1.0"
