"""The job store in Redis: records changed only by atomic compare-and-set (Lua)."""
