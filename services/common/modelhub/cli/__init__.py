"""The `modelhub` command line."""
