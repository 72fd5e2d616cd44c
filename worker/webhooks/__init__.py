"""Webhooks: signing (Standard Webhooks), sending, and the guard on the addresses imageq calls."""
