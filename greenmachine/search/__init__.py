"""Search loops: evolving proxies (GP) and, beside it, architecture search."""
