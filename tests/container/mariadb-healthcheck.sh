#!/bin/sh
# The official image's healthcheck.sh, for the test image: the server answers
# on its socket (--connect) with InnoDB started (--innodb_initialized).
exec mariadb-admin --socket=/run/mysqld/mysqld.sock ping > /dev/null
