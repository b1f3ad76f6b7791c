-- The action catalogue at work: each family's effect on the data model.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES
	(1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1), (3, 'Ann', 'ann@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.company (id, title, phone, email) VALUES (101, 'Acme', '+33 1 11 11 11 11', 'Info@Acme.example');
INSERT INTO crm.contact (id, name, phone, email, company_id) VALUES (101, 'Claire', '+33 6 22 22 22 22', 'claire@client.example', 101);

-- Chats: a group chat whose id later robots use, members, messages.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'create_group_chat',
	'{"name": "Deal {{title}}", "members": ["responsible", 1]}', name => 'room') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_chat_members',
	'{"chat": "{=Robot:room.chat_id}", "members": [3], "show_history": false}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'chat_message',
	'{"chat": "{=Robot:room.chat_id}", "type": "announcement", "text": "Kick-off for {{title}}"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'direct_message',
	'{"sender": 1, "recipients": "responsible", "text": "Good luck with {{title}}"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'feed_post',
	'{"title": "New deal", "text": "{{title}} started", "recipients": ["department:1"], "tags": ["deals", "q4"]}') IS NOT NULL AS added;
INSERT INTO crm.deal (id, title, responsible_id, contact_id, company_id, amount)
VALUES (101, 'Chairs', 2, 101, 101, 4800);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 101;
SELECT title, type, owner_id, created_by_automation FROM crm.chat;
SELECT user_id, show_history FROM crm.chat_member ORDER BY user_id;
SELECT chat_id IS NOT NULL AS in_chat, recipient_id, sender_id, type, text FROM crm.chat_message ORDER BY id;
SELECT title, text, tags, to_all FROM crm.feed_post;
SELECT user_id FROM crm.feed_post_recipient ORDER BY user_id;
SELECT action, status, error FROM crm.item_automation('deal', 101);

-- Meetings and calls: an activity and a calendar event each.
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'schedule_meeting',
	'{"when": "tomorrow", "subject": "Visit {{title}}", "location": "{{company.title}} office"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'schedule_call',
	'{"when": "2030-01-15 10:00:00+00", "subject": "Call about {{title}}"}') IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'prepayment_invoice') WHERE id = 101;
SELECT a.type, a.subject, a.responsible_id, e.owner_id, e.end_at - e.start_at AS length
  FROM crm.activity a JOIN crm.calendar_event e ON e.activity_id = a.id ORDER BY a.id;

-- The linked company and contact can be updated; the client lands on the exceptions list.
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'update_company', '{"fields": {"industry": "furniture"}}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'update_contact', '{"fields": {"post": "Buyer of {{title}}"}}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_to_exceptions', '{}') IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 101;
SELECT industry FROM crm.company;
SELECT post FROM crm.contact;
SELECT type, value FROM crm.exception_list ORDER BY type, value;

-- Documents from templates, resource bookings.
INSERT INTO crm.document_template (name, body) VALUES ('Contract', 'Contract for {{title}}: {{amount}} {{currency}}');
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'create_document', '{"template": "Contract"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'reserve_resource',
	'{"service": "Delivery", "start": "2030-02-01 09:00:00+00", "duration": "2 hours", "employees": [2, 3]}') IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice') WHERE id = 101;
SELECT title, body FROM crm.document;
SELECT service, user_id, duration, status FROM crm.resource_booking ORDER BY user_id;

-- Copying a deal into another pipeline, changing pipeline, converting.
SELECT crm.add_pipeline('deal', 'Service') AS service_pipeline \gset
SELECT crm.add_stage(:service_pipeline, 'intake', 'Intake') IS NOT NULL AS added;
SELECT crm.add_stage(:service_pipeline, 'done', 'Done', 'success') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'copy_deal', '{"pipeline": "Service", "responsible": 3}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'convert', '{"to": "invoice"}') IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 101;
SELECT d.title, p.name AS pipeline, s.code, d.responsible_id
  FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id JOIN crm.pipeline p ON p.id = s.pipeline_id ORDER BY d.id;
SELECT title, amount, deal_id FROM crm.invoice;

-- Leads: a contact from the lead, then conversion to a deal.
SELECT crm.add_robot(crm.stage('lead', 'in_process'), 'create_contact_from_lead', '{}', name => 'c') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('lead', 'processed'), 'convert', '{"to": "deal"}') IS NOT NULL AS added;
INSERT INTO crm.lead (id, title, contact_name, phone, responsible_id, amount) VALUES (101, 'Web lead', 'Paul', '+33 7 00 00 00 00', 2, 900);
UPDATE crm.lead SET stage_id = crm.stage('lead', 'in_process') WHERE id = 101;
UPDATE crm.lead SET stage_id = crm.stage('lead', 'processed') WHERE id = 101;
SELECT l.converted, l.is_repeated, s.code, c.name AS contact FROM crm.lead l JOIN crm.stage s ON s.id = l.stage_id
  JOIN crm.contact c ON c.id = l.contact_id;
SELECT title, amount, lead_id, contact_id IS NOT NULL AS has_contact FROM crm.deal WHERE lead_id = 101;

-- Responsibility: rotation over candidates, skipping absent users.
INSERT INTO crm.absence (user_id, start_at, end_at) VALUES (3, now() - interval '1 day', now() + interval '1 day');
SELECT crm.add_robot(crm.stage('quote', 'sent'), 'change_responsible',
	'{"users": [1, 2, 3], "mode": "rotate", "skip_absent": true}') IS NOT NULL AS added;
INSERT INTO crm.quote (title, stage_id) SELECT 'q' || g, crm.stage('quote', 'sent') FROM generate_series(1, 4) g;
SELECT title, responsible_id FROM crm.quote ORDER BY id;

-- Cancelling a reservation cancels every active booking of the item in the
-- chosen booking field, whatever its service, employees or time (seed 002);
-- bookings in other fields or of other items stay.
SELECT crm.add_field('deal', 'UF_VISIT', 'Visit', 'booking') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'cancel_reservation', '{"field": "uf_visit"}') IS NOT NULL AS added;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (102, 'Sofa', 2);
INSERT INTO crm.resource_booking (service, user_id, start_at, duration, field, entity_type, entity_id) VALUES
	('Visit', 2, '2030-03-01 09:00+00', '1 hour', 'UF_VISIT', 'deal', 102),
	('Fitting', 3, '2030-03-02 14:00+00', '2 hours', 'UF_VISIT', 'deal', 102),
	('Delivery', 2, '2030-03-03 09:00+00', '1 hour', NULL, 'deal', 102),
	('Visit', 3, '2030-03-01 09:00+00', '1 hour', 'UF_VISIT', 'deal', 101);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'lost') WHERE id = 102;
SELECT service, entity_id, field, status FROM crm.resource_booking WHERE start_at >= '2030-03-01' ORDER BY id;
SELECT action, status, outputs FROM crm.item_automation('deal', 102);

-- Chat messages go to any private group chat, not only the robots' own;
-- open chats and one-to-one dialogs are refused.  Members are added only to
-- chats made by create_group_chat (seed 004).
INSERT INTO crm.chat (id, title, type, owner_id) VALUES (901, 'Sales team', 'group', 1),
	(902, 'Company news', 'open', 1), (903, 'Mia and Sam', 'private', 1);
SELECT crm.add_robot(crm.stage('lead', 'junk'), 'chat_message', '{"chat": 901, "text": "Lost {{title}}"}', name => 'team') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('lead', 'junk'), 'chat_message', '{"chat": 902, "text": "Lost {{title}}"}', name => 'news') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('lead', 'junk'), 'chat_message', '{"chat": 903, "text": "Lost {{title}}"}', name => 'dialog') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('lead', 'junk'), 'add_chat_members', '{"chat": 901, "members": [3]}', name => 'join') IS NOT NULL AS added;
INSERT INTO crm.lead (id, title, responsible_id) VALUES (102, 'Spam lead', 2);
UPDATE crm.lead SET stage_id = crm.stage('lead', 'junk') WHERE id = 102;
SELECT name, status, error FROM crm.item_automation('lead', 102);
SELECT chat_id, text FROM crm.chat_message WHERE chat_id > 900;
SELECT count(*) AS members_of_901 FROM crm.chat_member WHERE chat_id = 901;

-- Files from a file field of the item (seed 004): "{{UF_DOCS}}" is checked
-- to be a file field when saved and yields the field's drive file ids when
-- the robot runs, next to ids given as such.
INSERT INTO crm.drive_file (id, name) VALUES (7, 'terms.pdf'), (11, 'plan.pdf'), (12, 'photo.jpg'), (13, 'quote.pdf');
SELECT crm.add_field('lead', 'UF_DOCS', 'Documents', 'file', true) IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('lead', 'converted'), 'send_email',
	'{"to": "client@example.com", "subject": "Your files", "body": "Attached", "attachments": [7, "{{UF_DOCS}}"]}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('lead', 'converted'), 'feed_post',
	'{"title": "Files of {{title}}", "text": "See the files", "files": "{{UF_DOCS}}"}') IS NOT NULL AS added;
INSERT INTO crm.lead (id, title, responsible_id, stage_id, fields) VALUES
	(103, 'Two files', 2, crm.stage('lead', 'converted'), '{"UF_DOCS": [11, 12]}'),
	(104, 'One file', 2, crm.stage('lead', 'converted'), '{"UF_DOCS": 13}'),
	(105, 'No file', 2, crm.stage('lead', 'converted'), '{}'),
	(106, 'Not a file', 2, crm.stage('lead', 'converted'), '{"UF_DOCS": "plan.pdf"}');
SELECT entity_id, payload->'attachments' AS attachments FROM crm.outbox WHERE entity_type = 'lead' ORDER BY entity_id;
SELECT entity_id, files FROM crm.feed_post WHERE entity_type = 'lead' ORDER BY entity_id;
SELECT action, status, error FROM crm.item_automation('lead', 106);

-- Restrictions by entity type are checked when saving.
SELECT crm.add_robot(crm.stage('lead', 'new'), 'copy_deal', '{}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'create_contact_from_lead', '{}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'convert', '{"to": "contact"}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'update_company', '{"fields": {"no_such": 1}}');
