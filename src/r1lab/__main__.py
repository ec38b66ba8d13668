"""``python -m r1lab`` (used by ``accelerate launch -m r1lab``)."""

import sys

from r1lab.cli import main

sys.exit(main())
