"""The benchmark cases, in table order. Each module has NAME, TITLE, TIMEOUT (s) and
``run(ctx) -> dict`` returning at least ``rows`` (see ``_common.row``)."""

ORDER = ["seq", "seq_throttled", "random", "latency", "decode", "memory", "concurrent"]
