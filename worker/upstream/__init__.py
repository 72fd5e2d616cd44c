"""The upstream aireiter API: the HTTP client and the parsing of its answers."""
