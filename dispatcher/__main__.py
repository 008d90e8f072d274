"""`python -m dispatcher` = `waybill dispatcher`."""

from __future__ import annotations

import sys

from waybill.cli import main

sys.exit(main(["dispatcher", *sys.argv[1:]]))
