#!/usr/bin/env python
"""Adapt the embedding model to real user questions: fine-tune it on labelled questions of an FAQ, once.

The same as ``faq-search adapt``; the code lives in ``service/cli/adapt.py`` (``--help`` lists the options).
"""

import sys

from service.cli.adapt import main

if __name__ == "__main__":
    sys.exit(main())
