"""`python -m kata.lab`: see kata/lab/__init__.py for the options."""

import sys

from kata.lab.run import main

sys.exit(main())
