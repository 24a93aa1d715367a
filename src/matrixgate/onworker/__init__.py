"""Self-contained scripts the master downloads to workers and runs with python3."""
