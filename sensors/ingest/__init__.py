"""The ingest pipeline: sockets -> frames -> lines -> samples -> minute buckets -> a store function.

Plain Python: no module here imports Django (`make lint` enforces it with import-linter), so the
pipeline can be tested, fuzzed and benchmarked on its own. The `collect` command hands it
`sensors.storage.write_batch` as the function that stores a drained batch.
"""
