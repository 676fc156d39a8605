"""The engine: priority slots, fetch places and the pool of fetch threads (the Downloader)."""
