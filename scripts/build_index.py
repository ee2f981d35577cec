#!/usr/bin/env python
"""Build the FAISS index of an FAQ corpus and publish it atomically (the previous index stays until then).

The same as ``faq-search build``; the code lives in ``service/cli/build.py`` (``--help`` lists the options).
"""

import sys

from service.cli.build import main

if __name__ == "__main__":
    sys.exit(main())
