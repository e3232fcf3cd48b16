"""``python -m xlvlm.cli`` (and ``torchrun -m xlvlm.cli``): the ``xlvlm`` command."""

import sys

from xlvlm.cli import main

sys.exit(main())
