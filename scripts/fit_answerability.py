#!/usr/bin/env python
"""Fit the answer check on covid_quebec_fr (leave-entry-out) and report it with the Chorus Pro dev sets.

The same as ``faq-search fit-answerability``; the code lives in ``service/cli/fit_answerability.py``.
"""

import sys

from service.cli.fit_answerability import main

if __name__ == "__main__":
    sys.exit(main())
