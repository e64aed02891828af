"""The HTTP layer: one router per domain, each parsing, calling one use case or service, and
rendering."""
