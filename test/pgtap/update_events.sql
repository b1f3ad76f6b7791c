-- Updates and the item events they may raise (field_changed,
-- responsible_changed): an update that changes none of the watched fields
-- is decided on the rows' bytes alone (crm_expr_same_in_rows) and must
-- decide as the full evaluation would: nothing logged when nothing watched
-- changed, the trigger when one did, also after the table's columns change.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(14);

INSERT INTO crm.user (id, name) VALUES (1, 'Mia'), (2, 'Sam');
SELECT crm.add_field('deal', 'UF_WATCHED', 'Watched', 'text') > 0
   AND crm.add_field('deal', 'UF_OTHER', 'Other', 'text') > 0 AS fields \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'field_changed',
	'{"fields": ["close_date", "UF_WATCHED"]}', name => 'Watched changed') AS watched \gset
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'responsible_changed', name => 'New owner') AS owner \gset

INSERT INTO crm.deal (id, title, responsible_id, amount, close_date, fields)
SELECT g, 'Deal ' || g, 1, 100, '2026-12-31', '{"UF_WATCHED": "a", "UF_OTHER": "x"}'
  FROM generate_series(1, 9) g;

CREATE FUNCTION pg_temp.decisions(id bigint) RETURNS bigint LANGUAGE sql AS
	$$ SELECT count(*) FROM crm.robot_log WHERE kind = 'trigger' AND entity_id = id $$;
CREATE FUNCTION pg_temp.stage_of(id bigint) RETURNS text LANGUAGE sql AS
	$$ SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = stage_of.id $$;

UPDATE crm.deal SET amount = amount + 1, title = title || '!' WHERE id = 1;
SELECT is(pg_temp.decisions(1), 0::bigint, 'columns nobody watches: no decision logged');
UPDATE crm.deal SET close_date = '2026-12-31', responsible_id = 1 WHERE id = 2;
SELECT is(pg_temp.decisions(2), 0::bigint, 'watched columns set to the values they had: nothing');
UPDATE crm.deal SET fields = fields || '{"UF_OTHER": "y"}' WHERE id = 3;
SELECT is(pg_temp.decisions(3), 0::bigint, 'a custom field nobody watches: nothing');
SELECT is(pg_temp.stage_of(3), 'new', 'and the deal stays');

UPDATE crm.deal SET fields = fields || '{"UF_WATCHED": "b"}' WHERE id = 4;
SELECT is(pg_temp.stage_of(4), 'executing', 'a watched custom field changed: the trigger moves the deal');
UPDATE crm.deal SET close_date = '2027-01-15' WHERE id = 5;
SELECT is(pg_temp.stage_of(5), 'executing', 'a watched column changed: moved');
UPDATE crm.deal SET close_date = NULL WHERE id = 6;
SELECT is(pg_temp.stage_of(6), 'executing', 'a watched column set to null: moved');
UPDATE crm.deal SET responsible_id = 2 WHERE id = 7;
SELECT is(pg_temp.stage_of(7), 'preparation', 'the responsible changed: moved');
SELECT results_eq($$SELECT trigger_id, status FROM crm.robot_log WHERE kind = 'trigger' AND entity_id = 7$$,
	format('VALUES (%s::bigint, %L::text)', :owner, 'fired'), 'and logged fired');

-- The table's columns change under the cached positions of the columns.
ALTER TABLE crm.deal ADD COLUMN extra_note text;
UPDATE crm.deal SET extra_note = 'n' WHERE id = 8;
SELECT is(pg_temp.decisions(8), 0::bigint, 'a column added later, nobody watches it: nothing');
UPDATE crm.deal SET close_date = '2027-02-01' WHERE id = 8;
SELECT is(pg_temp.stage_of(8), 'executing', 'after the column was added, a watched change still moves');
ALTER TABLE crm.deal DROP COLUMN extra_note;
UPDATE crm.deal SET amount = 1 WHERE id = 9;
SELECT is(pg_temp.decisions(9), 0::bigint, 'after the column was dropped: nothing for an unwatched change');
UPDATE crm.deal SET fields = fields || '{"UF_WATCHED": "c"}' WHERE id = 9;
SELECT is(pg_temp.stage_of(9), 'executing', 'and a watched custom field still moves');

-- Many rows in one statement, none changing a watched field.
UPDATE crm.deal SET amount = amount + 1;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE kind = 'trigger' AND status <> 'fired'), 0::bigint,
	'an update of every deal changing nothing watched logs nothing');

SELECT * FROM finish();
ROLLBACK;
