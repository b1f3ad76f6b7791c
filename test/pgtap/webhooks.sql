-- What a webhook robot queues: a body given as text stays text (sent as
-- is), and the values a URL template inserts are percent-encoded.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(5);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'webhook',
	'{"url": "https://hooks.example.com/deal/{{id}}?title={{title}}&by={{responsible_id}}", "body": "Deal {{title}} is prepared"}') IS NOT NULL AS r1;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (5, 'A&B c/d #1', 1);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 5;

SELECT is((SELECT jsonb_typeof(payload -> 'body') FROM crm.outbox WHERE channel = 'webhook'), 'string',
	'a body given as text is queued as a JSON string, not an array');
SELECT is((SELECT payload ->> 'body' FROM crm.outbox WHERE channel = 'webhook'), 'Deal A&B c/d #1 is prepared',
	'with its template rendered');
SELECT is((SELECT payload ->> 'url' FROM crm.outbox WHERE channel = 'webhook'),
	'https://hooks.example.com/deal/5?title=A%26B%20c%2Fd%20%231&by=1',
	'the values of the URL template are percent-encoded, its literal parts kept');

-- A JSON body keeps its shape, its strings rendered.
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'webhook',
	'{"url": "https://hooks.example.com/x", "body": {"deal": "{{title}}", "tags": ["a", "{{id}}"]}}') IS NOT NULL AS r2;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 5;
SELECT is((SELECT payload -> 'body' FROM crm.outbox WHERE channel = 'webhook' AND payload ->> 'url' = 'https://hooks.example.com/x'),
	'{"deal": "A&B c/d #1", "tags": ["a", "5"]}'::jsonb, 'a JSON body keeps its shape');
SELECT is((SELECT payload ->> 'url' FROM crm.outbox WHERE channel = 'webhook' AND payload ->> 'url' LIKE '%/x'),
	'https://hooks.example.com/x', 'a URL without values is as written');

SELECT * FROM finish();
ROLLBACK;
