#!/usr/bin/env python
"""Measure retrieval quality with the service's own builder and engine: R@k, MRR, nDCG@10 and the answer decision.

The same as ``faq-search evaluate``; the code lives in ``service/cli/evaluate.py`` (``--help`` lists the options).
"""

import sys

from service.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
