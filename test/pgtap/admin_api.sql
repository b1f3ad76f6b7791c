-- Admin functions of the foundation: success paths, and every failure path
-- with its SQLSTATE and message, leaving nothing stored.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(52);

-- crm.add_pipeline
SELECT ok(crm.add_pipeline('deal', 'Wholesale') > 0, 'add_pipeline returns an id');
SELECT is((SELECT count(*) FROM crm.stage s JOIN crm.pipeline p ON p.id = s.pipeline_id WHERE p.name = 'Wholesale'),
	0::bigint, 'a new pipeline starts empty');
SELECT throws_ok($$SELECT crm.add_pipeline('deal', 'Wholesale')$$, '42710',
	'pipeline "Wholesale" already exists for deal', 'duplicate pipeline name');
SELECT throws_ok($$SELECT crm.add_pipeline('lead', 'Second')$$, '0A000',
	'entity type "lead" has a single pipeline', 'leads have one pipeline');
SELECT throws_ok($$SELECT crm.add_pipeline('contact', 'X')$$, '0A000',
	'entity type "contact" has no pipelines', 'contacts have no pipelines');
SELECT throws_ok($$SELECT crm.add_pipeline('spaceship', 'X')$$, '42704',
	'unknown entity type "spaceship"', 'unknown entity type');
SELECT throws_ok($$SELECT crm.add_pipeline('deal', '  ')$$, '22023',
	'pipeline name must not be empty', 'empty pipeline name');
SELECT is((SELECT count(*) FROM crm.pipeline WHERE entity_type = 'deal'), 2::bigint, 'failed calls stored no pipeline');

-- crm.add_stage: order, placement, renumbering
SELECT ok(crm.add_stage(crm.default_pipeline('deal'), 'negotiation', 'Negotiation') > 0, 'add a process stage');
SELECT results_eq($$SELECT code FROM crm.stage WHERE pipeline_id = crm.default_pipeline('deal') ORDER BY sort$$,
	ARRAY['new', 'preparation', 'prepayment_invoice', 'executing', 'final_invoice', 'negotiation', 'won', 'lost'],
	'a process stage with no sort goes after the last process stage');
SELECT results_eq($$SELECT sort FROM crm.stage WHERE pipeline_id = crm.default_pipeline('deal') ORDER BY sort$$,
	ARRAY[10, 20, 30, 40, 50, 60, 70, 80], 'stages are renumbered 10, 20, 30 ...');
SELECT ok(crm.add_stage(crm.default_pipeline('deal'), 'Qualify', 'Qualify', sort => 15) > 0, 'add with an explicit sort');
SELECT is((SELECT code FROM crm.stage WHERE pipeline_id = crm.default_pipeline('deal') AND sort = 20), 'qualify',
	'an explicit sort places the stage (code lower-cased)');
SELECT ok(crm.add_stage(crm.default_pipeline('deal'), 'cancelled', 'Cancelled', 'failure') > 0, 'add a failure stage');
SELECT is((SELECT code FROM crm.stage WHERE pipeline_id = crm.default_pipeline('deal') ORDER BY sort DESC LIMIT 1),
	'cancelled', 'a final stage with no sort goes last');
SELECT throws_ok($$SELECT crm.add_stage(crm.default_pipeline('deal'), 'won', 'Won again')$$, '42710',
	'stage "won" already exists in pipeline "General"', 'duplicate stage code');
SELECT throws_ok($$SELECT crm.add_stage(crm.default_pipeline('deal'), 'bonus', 'Bonus', 'success')$$, '23505',
	'pipeline "General" already has a success stage', 'one success stage per pipeline');
SELECT throws_ok($$SELECT crm.add_stage(crm.default_pipeline('deal'), 'x', 'X', 'maybe')$$, '22023',
	'invalid stage semantics "maybe"', 'bad semantics');
SELECT throws_ok($$SELECT crm.add_stage(crm.default_pipeline('deal'), '9 lives', 'X')$$, '22023',
	'invalid stage code "9 lives"', 'bad code');
SELECT throws_ok($$SELECT crm.add_stage(crm.default_pipeline('deal'), 'ok_code', '')$$, '22023',
	'stage name must not be empty', 'empty stage name');
SELECT throws_ok($$SELECT crm.add_stage(999999, 'x', 'X')$$, '42704', 'pipeline 999999 does not exist', 'unknown pipeline');
SELECT throws_ok($$SELECT crm.add_stage(NULL, 'x', 'X')$$, '22004', 'pipeline id must not be null', 'null pipeline');
SELECT is((SELECT count(*) FROM crm.stage WHERE pipeline_id = crm.default_pipeline('deal')), 10::bigint,
	'failed calls stored no stage');

-- crm.move_stage, crm.rename_stage
SELECT lives_ok($$SELECT crm.move_stage(crm.stage('deal', 'negotiation'), 10)$$, 'move a stage first');
SELECT is((SELECT code FROM crm.stage WHERE pipeline_id = crm.default_pipeline('deal') ORDER BY sort LIMIT 1),
	'negotiation', 'a taken sort puts the moved stage before the holder');
SELECT throws_ok($$SELECT crm.move_stage(crm.stage('deal', 'negotiation'), NULL)$$, '22004',
	'sort must not be null', 'move needs a sort');
SELECT lives_ok($$SELECT crm.rename_stage(crm.stage('deal', 'negotiation'), 'Talks', 'talks')$$, 'rename and re-code');
SELECT is((SELECT name FROM crm.stage WHERE id = crm.stage('deal', 'talks')), 'Talks', 'renamed');
SELECT throws_ok($$SELECT crm.rename_stage(crm.stage('deal', 'talks'), 'Talks', 'won')$$, '42710',
	'stage "won" already exists in this pipeline', 'rename to a taken code');
SELECT throws_ok($$SELECT crm.rename_stage(crm.stage('deal', 'talks'), NULL)$$, '22023',
	'stage name must not be empty', 'rename to nothing');
SELECT throws_ok($$SELECT crm.rename_stage(424242, 'x')$$, '42704', 'stage 424242 does not exist', 'rename unknown stage');

-- crm.delete_stage
INSERT INTO crm.deal (title, stage_id) VALUES ('Busy', crm.stage('deal', 'talks'));
SELECT throws_ok($$SELECT crm.delete_stage(crm.stage('deal', 'talks'))$$, '55006',
	'stage "talks" still holds items', 'a stage with items is kept');
CREATE FUNCTION pg_temp.hint_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
	EXECUTE q;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
	RETURN h;
END $$;
SELECT alike(pg_temp.hint_of($$SELECT crm.delete_stage(crm.stage('deal', 'talks'))$$),
	'Move them to another stage first: UPDATE crm.deal SET stage_id = % WHERE stage_id = %',
	'the hint says how to move the items');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE title = 'Busy';
SELECT lives_ok($$SELECT crm.delete_stage(crm.stage('deal', 'talks'))$$, 'an empty stage is deleted');
SELECT throws_ok($$SELECT crm.stage('deal', 'talks')$$, '42704',
	'stage "talks" does not exist in pipeline "General" of deal', 'it is gone');
SELECT alike(pg_temp.hint_of($$SELECT crm.stage('deal', 'talks')$$), 'Its stages are: %new%won%',
	'the hint lists the existing stages');
SELECT ok(crm.add_stage(crm.stage('deal', 'won') * 0 + (SELECT id FROM crm.pipeline WHERE name = 'Wholesale'), 'only', 'Only') > 0,
	'a stage in the extra pipeline');
SELECT throws_ok($$SELECT crm.delete_stage(crm.stage('deal', 'only', 'Wholesale'))$$, '55006',
	'stage "only" is the last stage of its pipeline', 'the last stage is kept');

-- crm.stage by pipeline id or name; crm.delete_pipeline
SELECT is(crm.stage('deal', 'only', 'Wholesale'), crm.stage('deal', 'only', (SELECT id FROM crm.pipeline WHERE name = 'Wholesale')),
	'stage by pipeline name = by pipeline id');
SELECT throws_ok($$SELECT crm.stage('deal', 'new', 'Nope')$$, '42704', 'pipeline "Nope" does not exist for deal', 'unknown pipeline name');
SELECT throws_ok($$SELECT crm.stage('lead', 'new', (SELECT id FROM crm.pipeline WHERE name = 'Wholesale'))$$, '22023',
	NULL, 'a pipeline of another entity type');
SELECT throws_ok($$SELECT crm.delete_pipeline(crm.default_pipeline('deal'))$$, '55006',
	'pipeline "General" is the default pipeline of deal', 'the default pipeline is kept');
SELECT lives_ok($$SELECT crm.delete_pipeline((SELECT id FROM crm.pipeline WHERE name = 'Wholesale'))$$, 'delete an empty pipeline');

-- crm.create_smart_process
SELECT is(crm.create_smart_process('Delivery', 'Deliveries'), 128, 'smart processes are numbered from 128');
SELECT is((SELECT id_prefix FROM crm.entity_type WHERE code = 'delivery'), 'T80', 'with a T-prefix for bindings');
SELECT results_eq($$SELECT code FROM crm.stage WHERE pipeline_id = crm.default_pipeline('delivery') ORDER BY sort$$,
	ARRAY['new', 'preparation', 'client', 'success', 'fail'], 'and default stages');
SELECT ok(crm.add_pipeline('delivery', 'Express') > 0, 'smart processes may have several pipelines');
SELECT throws_ok($$SELECT crm.create_smart_process('delivery', 'Again')$$, '42710', 'entity type "delivery" already exists', 'duplicate code');
SELECT throws_ok($$SELECT crm.create_smart_process('deal', 'Deals 2')$$, '42710', 'entity type "deal" already exists', 'built-in code');
SELECT throws_ok($$SELECT crm.create_smart_process('1bad', 'X')$$, '22023', 'invalid smart process code "1bad"', 'bad code');

-- crm.add_field
SELECT ok(crm.add_field('deal', 'UF_SOURCE', 'Source') > 0, 'register a custom field');
SELECT throws_ok($$SELECT crm.add_field('deal', 'uf_source', 'Again')$$, '42710', 'field "uf_source" already exists for deal', 'codes are case-insensitive');

SELECT * FROM finish();
ROLLBACK;
