"""Small synthetic sources in their real on-disk formats, one module per format.

They serve the demo, the tests and the benchmarks: each writer reproduces the quirks the real
files have (see the module docstrings), so builders are exercised on what users download.
"""
