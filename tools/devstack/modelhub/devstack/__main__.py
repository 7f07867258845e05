"""`python -m modelhub.devstack`: the local stack (`make up`)."""

from modelhub.devstack.stack import main

raise SystemExit(main())
