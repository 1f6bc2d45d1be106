"""``python -m gradparity.bench``: how long a verdict takes next to the bare frameworks.

Everything is measured in one process run, thread counts pinned to one (the command
re-executes itself with the variables set before NumPy loads), as medians of interleaved
repeats. See `gradparity.bench.run`.
"""
