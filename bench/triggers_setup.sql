-- The data of the trigger benchmarks (bench/triggers_bench.sh timed,
-- bench/triggers_instructions.sh in instructions): N deals, the triggers of
-- the three cases, use_case() to activate one.  A run is single-row INSERTs
-- of an incoming call, one per deal.
\pset footer off
SET client_min_messages = warning;
SET bench.n = :'n';
CREATE EXTENSION crm_automation;
INSERT INTO crm.user (id, name) VALUES (1, 'Bench');

\ir common.sql

-- Calls for deals first..n, each its own INSERT statement (a prepared plan,
-- as an application's).
CREATE FUNCTION calls(n int, first int DEFAULT 1) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN first..n LOOP
		INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
		VALUES ('deal', i, 'call', 'incoming', '+336' || i, 'Call');
	END LOOP;
END $$;

INSERT INTO crm.deal (id, title, responsible_id, amount)
	SELECT g, 'd' || g, 1, g FROM generate_series(1, :n) g;
VACUUM ANALYZE crm.deal;

-- Every trigger of the three cases is defined once; a case is the set of
-- active ones.  Cases alternate, round after round, so that all see the same
-- machine load; each figure is the median of its rounds.
SELECT crm.add_pipeline('deal', 'Wholesale') AS wholesale \gset
SELECT crm.add_stage(:wholesale, 'talks', 'Talks') AS talks \gset
SELECT crm.add_webform('contact_us', 'Contact us') AS form, crm.create_smart_process('smart_bench', 'Bench') AS smart;
CREATE TABLE bench_trigger (id bigint, in_a boolean, in_b boolean, in_c boolean);
-- 50 triggers of every event; calls on the deal's pipeline are not among them.
INSERT INTO bench_trigger SELECT id, true, true, true FROM (
	SELECT crm.add_trigger(crm.stage('deal', s), 'field_changed', '{"fields": ["amount", "close_date"]}') FROM unnest(ARRAY['preparation', 'executing', 'final_invoice']) s
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'responsible_changed')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', s), 'incoming_email') FROM unnest(ARRAY['preparation', 'executing']) s
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'missed_call')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'openline_message')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webform', '{"form": "contact_us"}')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'link_click')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'email_read')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'qr_scan')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'final_invoice'), 'invoice_paid')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'final_invoice'), 'payment')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'booking')
	UNION ALL SELECT crm.add_trigger(crm.stage('deal', 'lost'), 'webhook', jsonb_build_object('code', 'lost' || g)) FROM generate_series(1, 14) g
	UNION ALL SELECT crm.add_trigger(:talks, 'incoming_call', name => 'other pipeline ' || g) FROM generate_series(1, 5) g
	UNION ALL SELECT crm.add_trigger(crm.stage('lead', 'in_process'), e) FROM unnest(ARRAY['incoming_call', 'incoming_email', 'openline_message', 'missed_call']) e
	UNION ALL SELECT crm.add_trigger(crm.stage('invoice', 'sent'), 'incoming_call')
	UNION ALL SELECT crm.add_trigger(crm.stage('invoice', 'paid'), 'invoice_paid')
	UNION ALL SELECT crm.add_trigger(crm.stage('quote', 'sent'), 'incoming_call')
	UNION ALL SELECT crm.add_trigger(crm.stage('quote', 'received'), 'webhook', '{"code": "quote.seen"}')
	UNION ALL SELECT crm.add_trigger(crm.stage('lead', 'processed'), 'webform', '{"form": "contact_us"}')
	UNION ALL SELECT crm.add_trigger(crm.stage('lead', 'processed'), 'field_changed', '{"fields": ["phone"]}')
	UNION ALL SELECT crm.add_trigger(crm.stage('invoice', 'sent'), 'field_changed', '{"fields": ["due_date"]}')
	UNION ALL SELECT crm.add_trigger(crm.stage('smart_bench', 'client'), 'webhook', jsonb_build_object('code', 'smart' || g))
	  FROM generate_series(1, 5) g
) t(id);
-- b and c: 5 of the lost-deal webhooks make way for 5 call triggers on the
-- deal's pipeline, whose conditions do not hold (b) or, for one, hold (c).
UPDATE bench_trigger SET in_b = false, in_c = false
 WHERE id IN (SELECT t.id FROM crm.trigger t WHERE t.params->>'code' LIKE 'lost%' ORDER BY t.id LIMIT 5);
INSERT INTO bench_trigger SELECT crm.add_trigger(crm.stage('deal', s), 'incoming_call',
		condition => '"{{amount}} > 1000000000"', name => 'call ' || s), false, true, false
  FROM unnest(ARRAY['preparation', 'prepayment_invoice', 'executing', 'final_invoice', 'won']) s;
INSERT INTO bench_trigger SELECT crm.add_trigger(crm.stage('deal', s), 'incoming_call',
		condition => CASE WHEN s = 'preparation' THEN NULL ELSE '"{{amount}} > 1000000000"'::jsonb END,
		name => 'moving call ' || s), false, false, true
  FROM unnest(ARRAY['preparation', 'prepayment_invoice', 'executing', 'final_invoice', 'won']) s;
SELECT count(*) FILTER (WHERE in_a) AS triggers_a, count(*) FILTER (WHERE in_b) AS triggers_b,
       count(*) FILTER (WHERE in_c) AS triggers_c FROM bench_trigger;

-- The tables the calls write already hold rows, as a user's database does
-- (200,000 earlier calls, log rows and history entries), and they are never
-- emptied between cases: each case starts from the same prepared data.
SET session_replication_role = replica;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
	SELECT 'deal', 1 + g % :n, 'call', 'incoming', '+337' || g, 'Earlier call' FROM generate_series(1, 200000) g;
INSERT INTO crm.automation_log (kind, action, entity_type, entity_id, status)
	SELECT 'trigger', 'incoming_call', 'deal', 1 + g % :n, 'condition_false' FROM generate_series(1, 200000) g;
INSERT INTO crm.history (entity_type, entity_id, event_type, text)
	SELECT 'deal', 1 + g % :n, 'stage_change', 'earlier move' FROM generate_series(1, 200000) g;
RESET session_replication_role;
VACUUM ANALYZE crm.activity, crm.automation_log, crm.history;

CREATE FUNCTION use_case(c text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	UPDATE crm.trigger t SET active = CASE c WHEN 'a' THEN b.in_a WHEN 'b' THEN b.in_b
											 WHEN 'c' THEN b.in_c ELSE false END
	  FROM bench_trigger b WHERE b.id = t.id;
	UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE stage_id <> crm.stage('deal', 'new');
END $$;

