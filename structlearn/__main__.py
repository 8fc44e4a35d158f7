"""``python -m structlearn``: the CLI, so that ``torchrun ... -m structlearn discover`` works."""
import sys

from structlearn.cli import main

sys.exit(main())
