# Citus for the distributed tests and benchmarks (sourced after scripts/lib.sh).
#
#   crm_citus_install        builds Citus from the vendored source once and
#                            installs it into PostgreSQL (or $PG_ROOT)
#   crm_citus_cluster_start  a coordinator and two workers on loopback, with
#                            citus and crm_automation preloaded; sets
#                            CRM_CITUS_PORTS (coordinator first), PGHOST, PGPORT
#   crm_citus_cluster_stop   stops and removes them
#
# Citus is not packaged for Debian: its source is in the workplace's
# shared/vendor folder (a tarball and a patch for PostgreSQL 15.20).  The
# build (about a minute on 2 CPUs) is kept under $CRM_CITUS_CACHE, keyed by
# the checksums of the tarball and the patch and by the PostgreSQL version,
# so that only the first run on a machine compiles.

CRM_CITUS_CACHE=${CRM_CITUS_CACHE:-/var/cache/crm_automation}
CRM_CITUS_PACKAGES=(liblz4-dev libzstd-dev libkrb5-dev)

# The vendored source: $CRM_VENDOR_DIR, else shared/vendor next to the
# checkout (the workplace's layout), else /work/shared/vendor.
crm_citus_vendor() {
	local d
	for d in "${CRM_VENDOR_DIR:-}" "$(pwd)/../shared/vendor" /work/shared/vendor; do
		if [ -n "$d" ] && ls "$d"/citus-*.tar.gz >/dev/null 2>&1; then
			(cd "$d" && pwd)
			return 0
		fi
	done
	echo "citus: no citus-*.tar.gz in \$CRM_VENDOR_DIR, ../shared/vendor or /work/shared/vendor" >&2
	return 1
}

crm_citus_install() {
	local vendor tarball key stage src pgv
	vendor=$(crm_citus_vendor) || return 1
	tarball=$(ls "$vendor"/citus-*.tar.gz | sort | tail -n 1)
	pgv=$(pg_config --version | tr -c 'A-Za-z0-9.\n' _)
	key=$(cat "$tarball" "$vendor"/citus-*.patch 2>/dev/null | sha256sum | cut -c1-16)-$pgv
	stage=$CRM_CITUS_CACHE/citus-$key
	if [ ! -f "$stage/.complete" ]; then
		crm_install_deps "${CRM_CITUS_PACKAGES[@]}"
		crm_as_root mkdir -p "$CRM_CITUS_CACHE"
		crm_as_root rm -rf "$stage" "$stage.build"
		crm_as_root mkdir -p "$stage.build"
		crm_as_root chown "$(id -u)" "$stage.build"
		echo "citus: building $(basename "$tarball") (cached as $stage)"
		tar -xzf "$tarball" -C "$stage.build"
		src=$(ls -d "$stage.build"/citus-*/ | head -n 1)
		local p
		for p in "$vendor"/citus-*.patch; do
			[ -e "$p" ] || continue
			(cd "$src" && patch -s -p1 <"$p") || return 1
		done
		(cd "$src" && ./configure -q PG_CONFIG="$(command -v pg_config)" >"$stage.build/configure.log" 2>&1 \
			&& make -s -j2 >"$stage.build/make.log" 2>&1 \
			&& make -s install DESTDIR="$stage.build/root" >>"$stage.build/make.log" 2>&1) \
			|| { tail -n 40 "$stage.build/configure.log" "$stage.build/make.log" >&2; return 1; }
		crm_as_root mv "$stage.build/root" "$stage"
		crm_as_root touch "$stage/.complete"
		crm_as_root rm -rf "$stage.build"
	fi
	# the staged files, copied over the installation (or the private copy)
	if [ -n "${PG_ROOT:-}" ]; then
		cp -a "$stage/usr/." "$PG_ROOT/usr/"
	else
		crm_as_root cp -a "$stage/usr/." /usr/
	fi
}

# crm_citus_cluster_start DB [extra postgresql.conf lines...]: three nodes
# under one directory ($CRM_CITUS_DIR), each with database DB holding the
# citus extension; the workers are registered on the coordinator.  PGHOST
# and PGPORT name the coordinator; CRM_CITUS_PORTS lists the three ports.
crm_citus_cluster_start() {
	local db=$1 bindir node port i
	shift
	bindir=$(crm_pg_bindir)
	CRM_CITUS_DIR=$(mktemp -d /tmp/crm_citus.XXXXXX)
	chmod 755 "$CRM_CITUS_DIR"
	if [ "$(id -u)" = 0 ]; then
		chown postgres: "$CRM_CITUS_DIR"
		PGUSER=postgres
	else
		PGUSER=$(id -un)
	fi
	PGHOST=$CRM_CITUS_DIR
	CRM_CITUS_PORTS=()
	export PGHOST PGUSER CRM_CITUS_DIR
	for node in coordinator worker1 worker2; do
		port=$(crm_free_port)
		CRM_CITUS_PORTS+=("$port")
		crm_as_owner "$bindir/initdb" -D "$CRM_CITUS_DIR/$node" -U "$PGUSER" -A trust \
			--no-sync -E UTF8 --locale=C.UTF-8 >"$CRM_CITUS_DIR/$node.initdb.log" 2>&1 \
			|| { cat "$CRM_CITUS_DIR/$node.initdb.log"; return 1; }
		{
			echo "shared_preload_libraries = 'citus,crm_automation'"
			echo "port = $port"
			echo "listen_addresses = '127.0.0.1'"
			echo "unix_socket_directories = '$CRM_CITUS_DIR'"
			echo "fsync = off"
			echo "max_worker_processes = 32"
			echo "max_connections = 200"
			echo "log_min_messages = warning"
			echo "timezone = 'UTC'"
			echo "citus.max_cached_conns_per_worker = 2"
			for line in "$@"; do echo "$line"; done
		} | crm_as_owner tee -a "$CRM_CITUS_DIR/$node/postgresql.conf" >/dev/null
		crm_as_owner "$bindir/pg_ctl" -D "$CRM_CITUS_DIR/$node" -l "$CRM_CITUS_DIR/$node.log" \
			-w -t 60 start >/dev/null || { cat "$CRM_CITUS_DIR/$node.log"; return 1; }
		psql -X -q -p "$port" -d postgres -c "CREATE DATABASE $db" >/dev/null
		psql -X -q -p "$port" -d "$db" -c "CREATE EXTENSION citus" >/dev/null
	done
	PGPORT=${CRM_CITUS_PORTS[0]}
	export PGPORT
	psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL
SELECT citus_set_coordinator_host('127.0.0.1', ${CRM_CITUS_PORTS[0]});
SELECT citus_add_node('127.0.0.1', ${CRM_CITUS_PORTS[1]});
SELECT citus_add_node('127.0.0.1', ${CRM_CITUS_PORTS[2]});
SQL
}

crm_citus_cluster_stop() {
	[ -n "${CRM_CITUS_DIR:-}" ] && [ -d "$CRM_CITUS_DIR" ] || return 0
	local node
	for node in coordinator worker1 worker2; do
		[ -d "$CRM_CITUS_DIR/$node" ] || continue
		crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CITUS_DIR/$node" -m fast -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$CRM_CITUS_DIR"
	CRM_CITUS_DIR=
}
