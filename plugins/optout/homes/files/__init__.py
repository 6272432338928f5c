"""Extracts kept as CSV or Parquet files, streamed in record batches so memory stays bounded.

One job per module: :mod:`formats` (which format a name says; light), :mod:`read` (any file as
batches), :mod:`csv_io`, :mod:`parquet_read`, :mod:`parquet_write` (with :mod:`parquet_footer`, its
footer join), :mod:`sinks` (the hashing output file) and :mod:`engine` (the filter over files).
"""
