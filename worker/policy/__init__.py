"""Pure policy: when to poll, how long to back off, when to retry a webhook."""
