# Shell functions shared by the demo, the test runner and the benchmarks.
#
#   crm_install_deps     installs the Debian packages that are missing
#   crm_build_install    builds and installs the extension
#   crm_cluster_start    starts a throw-away cluster (sets PGHOST, PGPORT,
#                        PGUSER, CRM_CLUSTER_DIR); crm_cluster_stop removes it
#   crm_icount_begin     an instruction benchmark's build, cluster and setup
#   crm_icount           instructions of statements in a single-user backend
#
# initdb and postgres refuse to run as root, so as root the cluster belongs to
# the unprivileged "postgres" user (created by the postgresql package).

CRM_PACKAGES=(build-essential postgresql-15 postgresql-server-dev-15
	libcurl4-openssl-dev libjansson-dev postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl python3 python3-aiosmtpd curl openssl pgbouncer)

crm_as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

crm_install_deps() {
	local missing=() p
	for p in "${CRM_PACKAGES[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "Installing: ${missing[*]}"
		crm_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		crm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

# PostgreSQL's programs: the system's, or those of the private copy
# $PG_ROOT (see crm_bench_build) when it is set.
crm_pg_bindir() {
	echo "${PG_ROOT:-}$(pg_config --bindir)"
}

crm_build_install() {
	make -s -j2 >/dev/null
	crm_as_root make -s install >/dev/null
}

# crm_bench_build: what a benchmark starts with.  By default the test lock
# (held until the script exits) and the extension built and installed into
# the system's PostgreSQL; with PG_ROOT=/tmp/x, into a private copy of
# PostgreSQL made beforehand, without the lock:
#   mkdir -p /tmp/x/usr/lib/postgresql /tmp/x/usr/share/postgresql
#   cp -a /usr/lib/postgresql/15 /tmp/x/usr/lib/postgresql/
#   cp -a /usr/share/postgresql/15 /tmp/x/usr/share/postgresql/
crm_bench_build() {
	if [ -n "${PG_ROOT:-}" ]; then
		make -s -j2 >/dev/null
		make -s install DESTDIR="$PG_ROOT" >/dev/null
		crm_pg_bindir() { echo "$PG_ROOT$(pg_config --bindir)"; }
	else
		exec 9>/tmp/crm_automation.test.lock
		flock 9
		crm_build_install
	fi
}

# Runs a command as the cluster's owner.
crm_as_owner() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

crm_free_port() {
	python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# crm_cluster_start [extra postgresql.conf lines...]
crm_cluster_start() {
	local bindir
	bindir=$(crm_pg_bindir)
	CRM_CLUSTER_DIR=$(mktemp -d /tmp/crm_cluster.XXXXXX)
	chmod 755 "$CRM_CLUSTER_DIR"
	if [ "$(id -u)" = 0 ]; then
		chown postgres: "$CRM_CLUSTER_DIR"
		PGUSER=postgres
	else
		PGUSER=$(id -un)
	fi
	PGPORT=$(crm_free_port)
	PGHOST=$CRM_CLUSTER_DIR
	export PGHOST PGPORT PGUSER CRM_CLUSTER_DIR
	crm_as_owner "$bindir/initdb" -D "$CRM_CLUSTER_DIR/data" -U "$PGUSER" -A trust \
		--no-sync -E UTF8 --locale=C.UTF-8 >"$CRM_CLUSTER_DIR/initdb.log" 2>&1 \
		|| { cat "$CRM_CLUSTER_DIR/initdb.log"; return 1; }
	{
		echo "shared_preload_libraries = 'crm_automation'"
		echo "port = $PGPORT"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$CRM_CLUSTER_DIR'"
		echo "fsync = off"
		echo "max_worker_processes = 32"
		echo "log_min_messages = warning"
		echo "timezone = 'UTC'"
		for line in "$@"; do echo "$line"; done
	} | crm_as_owner tee -a "$CRM_CLUSTER_DIR/data/postgresql.conf" >/dev/null
	crm_as_owner "$bindir/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -l "$CRM_CLUSTER_DIR/server.log" \
		-w -t 60 start >/dev/null || { cat "$CRM_CLUSTER_DIR/server.log"; return 1; }
}

crm_cluster_restart() {
	crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -l "$CRM_CLUSTER_DIR/server.log" \
		-w -t 60 "$@" restart >/dev/null
}

crm_cluster_stop() {
	[ -n "${CRM_CLUSTER_DIR:-}" ] && [ -d "$CRM_CLUSTER_DIR" ] || return 0
	crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$CRM_CLUSTER_DIR"
	CRM_CLUSTER_DIR=
}

# Instruction counts (bench/*_instructions.sh), noise-free on a shared box.
# crm_icount_prepare DIR: stops the running cluster and keeps a copy of it as
# DIR/prepared.  crm_icount DIR NAME SQL...: runs the statements, one per
# line, in a single-user backend on a fresh copy of it under callgrind and
# prints its instruction count (the file DIR/NAME.cg; also copied into
# $CALLGRIND_KEEP when set).
# crm_icount_begin SETUP_SQL N: what an instruction benchmark starts with
# (valgrind, the test lock, build and install, a cluster with SETUP_SQL run
# with -v n=N, kept as $W/prepared); W is its working directory, removed at
# exit with the cluster.
crm_icount_begin() {
	crm_install_deps valgrind
	exec 9>/tmp/crm_automation.test.lock
	flock 9
	crm_build_install
	W=$(mktemp -d /tmp/crm_icount.XXXXXX)
	chmod 777 "$W"
	trap 'crm_cluster_stop; rm -rf "$W"' EXIT
	crm_cluster_start "crm.worker_enabled = off"
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -v n="$2" -f "$1" >/dev/null
	crm_icount_prepare "$W"
}

crm_icount_prepare() {
	psql -X -q -d postgres -c "CHECKPOINT" >/dev/null
	crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -m fast -w stop >/dev/null
	crm_as_owner cp -a "$CRM_CLUSTER_DIR/data" "$1/prepared"
}

crm_icount() {
	local dir=$1 name=$2
	shift 2
	crm_as_owner rm -rf "$dir/data"
	crm_as_owner cp -a "$dir/prepared" "$dir/data"
	printf '%s\n' "$@" >"$dir/$name.sql"
	chmod 644 "$dir/$name.sql"
	crm_as_owner valgrind --tool=callgrind --callgrind-out-file="$dir/$name.cg" \
		"$(crm_pg_bindir)/postgres" --single -D "$dir/data" postgres <"$dir/$name.sql" >"$dir/$name.out" 2>&1
	if grep -q ERROR "$dir/$name.out"; then
		grep ERROR "$dir/$name.out" >&2
		return 1
	fi
	if [ -n "${CALLGRIND_KEEP:-}" ]; then
		mkdir -p "$CALLGRIND_KEEP"
		cp "$dir/$name.cg" "$CALLGRIND_KEEP/"
	fi
	awk '/^summary:/ {print $2}' "$dir/$name.cg"
}
