"""Benchmarks that print and save figures (see bench/README.md); not part of the service."""
