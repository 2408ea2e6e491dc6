"""`python -m megapairs.train` / `torchrun -m megapairs.train`: the train command on its own."""

import sys

from megapairs.train.cli import main

sys.exit(main())
