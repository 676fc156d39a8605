"""The benchmark cases, in table order. Each module has NAME, TITLE, TIMEOUT (s) and
``run(ctx) -> dict`` returning at least ``rows`` (see ``_common.row``)."""

ORDER = [
    "seq",
    "seq_throttled",
    "seq_https",
    "random",
    "random_https",
    "latency",
    "latency_https",
    "decode",
    "memory",
    "concurrent",
    "many",
    "many_https",
    "many_s3",
    "decode_while_reading",
]
