"""`python -m modelhub.monitor` runs the monitor service."""

import sys

from modelhub.monitor.main import main

sys.exit(main())
