"""Benchmarks: scripts comparing jaxpick with Topaz on the same inputs (`python -m bench.NAME`)."""
