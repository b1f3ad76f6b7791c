
-- ---------------------------------------------------------------------------
-- Last: ask the launcher to start this database's worker once CREATE
-- EXTENSION commits (nothing happens when the library is not preloaded).
-- ---------------------------------------------------------------------------
SELECT crm.start_worker();
