# crm_automation — PGXS build.
#
# The install script of the current version, sql/crm_automation--$(EXTVERSION).sql,
# is assembled from the ordered fragments in sql/install/ (one per topic), so
# that each concern keeps its own file; it is generated, not committed.
# Released versions are frozen and committed: sql/crm_automation--0.1.0.sql
# (the install script of 0.1.0 exactly as it was built) and the upgrade
# scripts sql/crm_automation--A--B.sql.  A change to sql/install/ must also go
# into the upgrade script to $(EXTVERSION) (test/integration/upgrade.sh fails
# otherwise).  pg_regress inputs are every other sql/*.sql file.

EXTENSION  = crm_automation
EXTVERSION = 0.2.0
MODULE_big = crm_automation

# src/ is layered: each folder uses only the folders below it (src/README.md,
# checked by test/layers.sh).
CRM_LAYERS = core expr actions engine triggers processes admin delivery
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c) $(foreach l,$(CRM_LAYERS),$(wildcard src/$(l)/*.c))))

CRM_INSTALL_SQL = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(CRM_INSTALL_SQL) $(filter-out $(CRM_INSTALL_SQL),$(wildcard sql/$(EXTENSION)--*.sql))

REGRESS = $(sort $(filter-out $(EXTENSION)--%,$(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --dbname=crm_regress

PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lcurl -ljansson
EXTRA_CLEAN = $(CRM_INSTALL_SQL) results regression.diffs regression.out

# No LLVM bitcode: JIT inlining of trigger code gains nothing here.
override with_llvm = no

# Rebuild objects when a header they include changes.
override autodepend = yes

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(CRM_INSTALL_SQL): $(sort $(wildcard sql/install/*.sql))
	cat $^ > $@

all: $(CRM_INSTALL_SQL)

# One command for every test (see README): builds, installs, starts a
# throw-away cluster, runs pg_regress, pgTAP and the integration tests.
test:
	bash test/run.sh

demo:
	bash demo/run.sh

.PHONY: test demo

print-regress:
	@echo $(REGRESS)
