"""The reliability suite: kill -9, concurrent writers, every injected fault, fuzzed pages (docs/RELIABILITY.md)."""
