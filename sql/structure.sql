-- The data model: entity types, default pipelines and stages, and what a
-- plain INSERT or UPDATE of an item does.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;

-- Built-in entity types; contacts and companies have no stages.
SELECT id, code, id_prefix, has_stages, multiple_pipelines
  FROM crm.entity_type ORDER BY id;

-- Each entity type with stages has one default pipeline with ordered stages.
SELECT p.entity_type, p.name, p.is_default, s.sort, s.code, s.semantics
  FROM crm.pipeline p JOIN crm.stage s ON s.pipeline_id = p.id
 ORDER BY p.entity_type, s.sort;

-- A deal inserted without a stage lands in the first stage of the default pipeline.
INSERT INTO crm.user (name, email) VALUES ('Anna', 'anna@example.com');
INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('First deal', 1, 1200);
SELECT d.title, s.code, d.amount, d.fields
  FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id;

-- A lead likewise, and its status is a stage too.
INSERT INTO crm.lead (title, phone) VALUES ('Inbound call', '+33 1 23 45 67 89');
SELECT l.title, s.code FROM crm.lead l JOIN crm.stage s ON s.id = l.stage_id;

-- Moving a deal between stages by plain SQL.
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE title = 'First deal';
SELECT s.code, d.stage_changed_at >= d.created_at AS stage_time_kept
  FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id;

-- A stage of another entity type is refused.
UPDATE crm.deal SET stage_id = crm.stage('lead', 'junk');
-- So is a stage that does not exist.
INSERT INTO crm.deal (title, stage_id) VALUES ('Ghost', 999999);

-- The acting user (crm.user_id) is recorded as author.
SET crm.user_id = 1;
INSERT INTO crm.company (title) VALUES ('Acme');
SELECT title, created_by, updated_by FROM crm.company;
RESET crm.user_id;

-- updated_at follows updates.
UPDATE crm.company SET updated_at = '2000-01-01', industry = 'retail';
SELECT industry, updated_at > '2000-01-01' AS touched FROM crm.company;

-- Custom fields live in fields jsonb, which must be an object.
-- (Terse errors: the failing row would show timestamps.)
\set VERBOSITY terse
INSERT INTO crm.deal (title, fields) VALUES ('Bad fields', '[1, 2]');
UPDATE crm.deal SET fields = '{"UF_SOURCE": "fair"}' WHERE title = 'First deal';
SELECT fields->>'UF_SOURCE' FROM crm.deal WHERE title = 'First deal';

-- Enumerations are checked.
INSERT INTO crm.task (title, responsible_id, status) VALUES ('x', 1, 'sleeping');
INSERT INTO crm.activity (entity_type, entity_id, type) VALUES ('deal', 1, 'fax');
\set VERBOSITY default
