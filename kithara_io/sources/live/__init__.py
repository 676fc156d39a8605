"""Sources without a length: radio (ICY, Shoutcast), chunked files, their buffer and reconnects."""
