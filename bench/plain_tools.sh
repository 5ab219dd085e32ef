#!/bin/sh
# The plain tools that bench/window.py compares the cutover flow against, as a migration
# team would script them by hand. No checks beyond what each procedure names.
#
#   plain_tools.sh pipe P       roles, then per database (P at a time):
#                               createdb on the target; pg_dump -Fc | ssh HOST pg_restore
#   plain_tools.sh pgcopydb P   roles, then per database (P at a time): createdb; pgcopydb clone
#   plain_tools.sh naive        roles; dump every database to a file; scp them all; restore
#                               them all over ssh; count the rows of every table on both sides
#
# From the environment (bench/window.py sets them from the sandbox):
#   SRC_HOST SRC_PORT DST_HOST DST_PORT PGUSER PGPASSFILE   both clusters (passwords in PGPASSFILE)
#   DATABASES        the databases to move, space separated
#   SSH_LOGIN        user@host of the target host; SSH_OPTS its ssh options (pinned host key)
#   SSH_PORT         its port; WORK local scratch directory; REMOTE_WORK one on the target host
#   PG_BIN           directory of pg_dump, pg_restore, psql, createdb (both hosts)
set -eu
mode=$1
parallel=${2:-1}
src="-h $SRC_HOST -p $SRC_PORT"
dst="-h $DST_HOST -p $DST_PORT"
remote_env="PGPASSFILE=$PGPASSFILE PGUSER=$PGUSER"
export PATH="$PG_BIN:$PATH"

roles() {
    # Every role but the ones both clusters have (the bootstrap superuser and ours, whose
    # password on the target must stay the target's).
    pg_dumpall $src --roles-only | grep -Ev "^(CREATE|ALTER) ROLE \"?(postgres|$PGUSER)\"?[ ;]" |
        psql $dst -q -d postgres >/dev/null 2>&1 || true
}

one_pipe() {
    createdb $dst "$1"
    pg_dump $src -Fc -d "$1" | ssh $SSH_OPTS -p "$SSH_PORT" "$SSH_LOGIN" "$remote_env pg_restore $dst -d '$1'"
}

one_pgcopydb() {
    createdb $dst "$1"
    pgcopydb clone --source "host=$SRC_HOST port=$SRC_PORT user=$PGUSER dbname=$1" \
        --target "host=$DST_HOST port=$DST_PORT user=$PGUSER dbname=$1" \
        --dir "$WORK/pgcopydb-$1" --table-jobs 1 --index-jobs 1 >"$WORK/pgcopydb-$1.log" 2>&1
}

counts() {  # counts HOSTARGS DB: "table count" lines of every table
    psql $1 -d "$2" -Atq -v ON_ERROR_STOP=1 -c "select format('select %L, count(*) from only %I.%I;', n.nspname || '.' || c.relname, n.nspname, c.relname)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
        order by 1" | psql $1 -d "$2" -Atq -v ON_ERROR_STOP=1
}

case $mode in
pipe | pgcopydb)
    roles
    printf '%s\n' $DATABASES | xargs -P "$parallel" -I{} "$0" "one-$mode" {}
    ;;
one-pipe) one_pipe "$2" ;;
one-pgcopydb) one_pgcopydb "$2" ;;
naive)
    roles
    for db in $DATABASES; do pg_dump $src -Fc -d "$db" -f "$WORK/$db.dump"; done
    ssh $SSH_OPTS -p "$SSH_PORT" "$SSH_LOGIN" "mkdir -p '$REMOTE_WORK'"
    scp -q $SSH_OPTS -P "$SSH_PORT" "$WORK"/*.dump "$SSH_LOGIN:$REMOTE_WORK/"
    for db in $DATABASES; do
        createdb $dst "$db"
        ssh $SSH_OPTS -p "$SSH_PORT" "$SSH_LOGIN" "$remote_env pg_restore $dst -d '$db' '$REMOTE_WORK/$db.dump'"
    done
    for db in $DATABASES; do
        counts "$src" "$db" >"$WORK/$db.src.counts"
        counts "$dst" "$db" >"$WORK/$db.dst.counts"
        cmp -s "$WORK/$db.src.counts" "$WORK/$db.dst.counts" || { echo "row counts differ in $db" >&2; exit 1; }
    done
    ;;
*) echo "usage: $0 pipe|pgcopydb P | naive" >&2; exit 2 ;;
esac
