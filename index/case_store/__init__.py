"""case_store."""
