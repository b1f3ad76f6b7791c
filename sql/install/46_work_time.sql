
-- ---------------------------------------------------------------------------
-- Working time: robots delayed {"after": "3 hours", "work_time": true} count
-- only the company's working days and hours (work_time.c).  One schedule
-- per database; holidays are dates off.
-- ---------------------------------------------------------------------------

CREATE TABLE crm.work_schedule (
	id			boolean PRIMARY KEY DEFAULT true CHECK (id),	-- a single row
	work_days	smallint[] NOT NULL DEFAULT '{1,2,3,4,5}'
				CHECK (cardinality(work_days) > 0 AND work_days <@ '{1,2,3,4,5,6,7}'),
	day_start	time NOT NULL DEFAULT '09:00',
	day_end		time NOT NULL DEFAULT '18:00',
	time_zone	text NOT NULL DEFAULT current_setting('TimeZone')
				CHECK (pg_catalog.timezone(time_zone, timestamptz '2000-01-01') IS NOT NULL),
	CHECK (day_start < day_end)
);
COMMENT ON TABLE crm.work_schedule IS
	'The working week: ISO days (1 Monday .. 7 Sunday), the working day''s start and end, read in time_zone.';
-- its single row is default data (60_defaults.sql)

CREATE TABLE crm.holiday (
	day			date PRIMARY KEY,
	name		text NOT NULL DEFAULT ''
);

CREATE TRIGGER definitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.work_schedule
	FOR EACH STATEMENT EXECUTE FUNCTION crm.definitions_changed();
CREATE TRIGGER definitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.holiday
	FOR EACH STATEMENT EXECUTE FUNCTION crm.definitions_changed();

CREATE FUNCTION crm.work_time_add(start timestamptz, delay interval) RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'crm_work_time_add_sql' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION crm.work_time_add(timestamptz, interval) IS
	'start + delay counted in working time: days are working days, hours are working hours (crm.work_schedule, crm.holiday).';
