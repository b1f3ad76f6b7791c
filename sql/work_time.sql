-- Delays counted in working time (work_time.c): the company works Monday
-- to Friday, 9:00 to 18:00 in Paris, and not on Christmas Day.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS crm_automation;
SET timezone = 'Europe/Paris';
UPDATE crm.work_schedule SET work_days = '{1,2,3,4,5}', day_start = '09:00', day_end = '18:00',
	time_zone = 'Europe/Paris';
INSERT INTO crm.holiday (day, name) VALUES ('2030-12-25', 'Christmas');

-- Hours are working hours; days are working days; a start outside working
-- time counts from the next working period.
SELECT start, delay, to_char(crm.work_time_add(start, delay), 'Dy YYYY-MM-DD HH24:MI') AS due
  FROM (VALUES
	('2030-06-07 17:00'::timestamptz, '3 hours'::interval),	-- a Friday: two hours on Monday
	('2030-06-08 10:00', '1 hour'),							-- a Saturday: Monday 10:00
	('2030-06-04 08:00', '30 minutes'),						-- before the day starts
	('2030-06-04 19:00', '30 minutes'),						-- after it ended
	('2030-06-04 10:00', '2 days'),							-- Tuesday to Thursday
	('2030-06-07 10:00', '1 day 2 hours'),					-- Friday to Monday, then two hours
	('2030-06-04 10:00', '20 hours'),						-- more than two working days
	('2030-12-24 17:00', '2 hours'),						-- over Christmas
	('2030-03-29 17:30', '1 hour')							-- over the change to summer time
  ) t (start, delay);

-- Months have no meaning in working time.
SELECT crm.work_time_add('2030-06-04 10:00', '1 month');

-- A robot delayed in working time: its job is due when the schedule says.
SELECT crm.add_robot(crm.stage('lead', 'in_process'), 'add_comment', '{"text": "Call back {{title}}"}',
	delay => '{"after": "4 hours", "work_time": true}', name => 'callback') IS NOT NULL AS added;
BEGIN;
INSERT INTO crm.lead (id, title, stage_id) VALUES (900, 'Late caller', crm.stage('lead', 'in_process'));
SELECT due_at = crm.work_time_add(now(), '4 hours') AS due_in_working_time,
       extract(isodow FROM due_at) BETWEEN 1 AND 5 AS on_a_working_day,
       due_at::time BETWEEN '09:00' AND '18:00' AS within_working_hours
  FROM crm.job WHERE entity_type = 'lead' AND entity_id = 900;
ROLLBACK;

-- What cannot be saved.
SELECT crm.add_robot(crm.stage('lead', 'in_process'), 'add_comment', '{"text": "x"}',
	delay => '{"at": "created_at", "work_time": true}');
SELECT crm.add_robot(crm.stage('lead', 'in_process'), 'add_comment', '{"text": "x"}',
	delay => '{"after": "1 month", "work_time": true}');
SELECT crm.add_robot(crm.stage('lead', 'in_process'), 'add_comment', '{"text": "x"}',
	delay => '{"after": "1 hour", "work_time": "yes"}');
UPDATE crm.work_schedule SET day_start = '18:00', day_end = '09:00';
UPDATE crm.work_schedule SET time_zone = 'Mars/Olympus_Mons';
UPDATE crm.work_schedule SET work_days = '{0}';
SELECT count(*) AS robots_with_bad_delays FROM crm.robot WHERE stage_id = crm.stage('lead', 'in_process') AND name IS DISTINCT FROM 'callback';
