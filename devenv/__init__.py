"""Local development environment: an embedded Redis, the simulator and a worker, for the demo
and the tests. Not used in production."""
