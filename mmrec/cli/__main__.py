"""``python -m mmrec.cli``: the same as the ``mmrec`` command."""

import sys

from mmrec.cli import main

sys.exit(main())
