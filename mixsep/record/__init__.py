"""A run's record: its status.json and folder lock (status), where it ran and which job it is (where), the code
that ran (provenance)."""
