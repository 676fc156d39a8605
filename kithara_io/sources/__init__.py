"""Where bytes come from: HTTP(S) servers and local files."""
