"""Training snapshots: consent-filtered datasets as of a date, lineage."""
