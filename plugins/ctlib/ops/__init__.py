"""Operators' checks of what ingest promised: the audit of lake and topic against the
watermarks (audit/) and per-log lag and stall health (health)."""
