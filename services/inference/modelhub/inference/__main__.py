"""`python -m modelhub.inference`."""

import sys

from modelhub.inference.main import main

sys.exit(main())
