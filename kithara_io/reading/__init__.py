"""The remote reading path: the reader, its schedule, fetch targeting, the sparse cache."""
