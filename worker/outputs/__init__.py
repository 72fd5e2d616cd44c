"""Outputs: fetching a finished job's images and storing them."""
