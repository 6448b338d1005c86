#!/bin/sh
# The official MariaDB image's start, for the test image: on an empty data
# directory, make the system tables, set the root password, the database and
# its user from the environment, run /docker-entrypoint-initdb.d/, then start
# the server with the command's arguments.
set -eu

# VAR from VAR, or from the file VAR_FILE names (a secret).
from_env_or_file() {
    eval "value=\${$1:-}"
    eval "path=\${$1_FILE:-}"
    if [ -n "$path" ]; then
        value=$(cat "$path")
    fi
    printf '%s' "$value"
}

# A value inside '...' in SQL.
sql_quote() {
    printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/''/g"
}

case "${1:-}" in
    -*) set -- mariadbd "$@" ;;
    "") set -- mariadbd ;;
esac

if [ "$1" = mariadbd ] && [ ! -d /var/lib/mysql/mysql ]; then
    root_password=$(from_env_or_file MARIADB_ROOT_PASSWORD)
    password=$(from_env_or_file MARIADB_PASSWORD)
    database=${MARIADB_DATABASE:-}
    user=${MARIADB_USER:-}
    echo "Initializing the database directory"
    chown mysql:mysql /var/lib/mysql
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
        --auth-root-authentication-method=normal > /dev/null
    socket=/run/mysqld/mysqld.sock
    mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
        --wsrep-on=OFF --socket="$socket" &
    server=$!
    for _ in $(seq 60); do
        mariadb-admin --socket="$socket" ping > /dev/null 2>&1 && break
        sleep 1
    done
    {
        echo "SET SESSION sql_log_bin = 0;"
        if [ -n "$root_password" ]; then
            quoted=$(sql_quote "$root_password")
            echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$quoted';"
            echo "CREATE USER 'root'@'%' IDENTIFIED BY '$quoted';"
            echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        fi
        if [ -n "$database" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"
        fi
        if [ -n "$user" ] && [ -n "$password" ]; then
            echo "CREATE USER '$user'@'%' IDENTIFIED BY '$(sql_quote "$password")';"
            [ -n "$database" ] && echo "GRANT ALL ON \`$database\`.* TO '$user'@'%';"
        fi
    } | mariadb --socket="$socket" -uroot
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh) echo "Running $script"; MARIADB_ROOT_PASSWORD="$root_password" . "$script" ;;
            *.sql) echo "Running $script"; mariadb --socket="$socket" -uroot ${root_password:+--password="$root_password"} < "$script" ;;
        esac
    done
    mariadb-admin --socket="$socket" -uroot ${root_password:+--password="$root_password"} shutdown \
        || kill "$server"
    wait "$server" || true
    echo "Database directory ready"
fi

if [ "$1" = mariadbd ]; then
    shift
    exec mariadbd --user=mysql "$@"
fi
exec "$@"
