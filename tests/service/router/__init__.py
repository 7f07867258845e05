"""Service tests of the router: real registry, inference and monitor servers, in-process."""
