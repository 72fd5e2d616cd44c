"""`make compose-check`: the docker-compose stack built and run for real (docs/compose.md)."""
