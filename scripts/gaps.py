#!/usr/bin/env python
"""The FAQ's missing questions from the query log (``--csv`` for a spreadsheet).

The same as ``faq-search gaps``; the code lives in ``service/cli/gaps.py``.
"""

import sys

from service.cli.gaps import main

if __name__ == "__main__":
    sys.exit(main())
