"""One reader per source format, each turning files as users download them into region records."""
