"""What users read: the JSON summary, tables, CSV breakdowns."""
