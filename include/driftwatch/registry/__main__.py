"""`python -m driftwatch.registry smoke ...`: the process smoke_test starts."""

import sys

from driftwatch.registry.smoke import main

sys.exit(main())
