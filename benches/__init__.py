"""Benchmarks of ferrowsgi against its peers (see benches/run.py)."""
