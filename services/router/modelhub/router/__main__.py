"""`python -m modelhub.router`."""

import sys

from modelhub.router.main import main

sys.exit(main())
