# Run once by the MariaDB image on a new data directory (a script in
# /docker-entrypoint-initdb.d/): the account mariabackup copies a node's data
# with when another node joins (the state transfer), its password a secret.
sst_password=$(cat /run/secrets/galera_sst_password)
mariadb --protocol=socket -uroot -p"$MARIADB_ROOT_PASSWORD" <<SQL
CREATE USER IF NOT EXISTS 'mariabackup'@'localhost' IDENTIFIED BY '${sst_password}';
GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'mariabackup'@'localhost';
SQL
