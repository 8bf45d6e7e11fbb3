"""Benchmarks of the pipeline: ``python -m bench`` (see ``bench/README.md``)."""
