"""Real servers for the tests and the benchmarks: gunicorn,
nginx and private MariaDB servers, all on 127.0.0.1."""
