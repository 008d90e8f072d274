"""Load, soak and chaos over HTTP (issue 13): `make load`, `python -m bench.load --help`."""
