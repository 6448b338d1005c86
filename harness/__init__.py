"""Real servers for the tests, the benchmarks and scripts/cluster: gunicorn,
nginx and private MariaDB servers, all on 127.0.0.1."""
