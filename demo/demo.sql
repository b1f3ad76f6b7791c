-- crm_automation demo: a deal moving through its pipeline.
\pset footer off
CREATE EXTENSION crm_automation;

\echo '== A team'
INSERT INTO crm.department (name) VALUES ('Sales');
INSERT INTO crm.user (name, email, department_id) VALUES
	('Mia Manager', 'mia@example.com', 1),
	('Sam Seller', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1 WHERE id = 1;
SELECT u.id, u.name, d.name AS department, d.head_id = u.id AS is_head
  FROM crm.user u JOIN crm.department d ON d.id = u.department_id ORDER BY u.id;

\echo '== The deal pipeline'
SELECT s.sort, s.code, s.name, s.semantics
  FROM crm.stage s WHERE s.pipeline_id = crm.default_pipeline('deal') ORDER BY s.sort;

\echo '== A deal is created by plain SQL and lands in the first stage'
INSERT INTO crm.contact (name, phone, email) VALUES ('Claire Client', '+33 6 12 34 56 78', 'claire@example.org');
INSERT INTO crm.deal (title, responsible_id, contact_id, amount)
VALUES ('Office chairs', 2, 1, 4800);
SELECT d.id, d.title, s.code AS stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id;

\echo '== It moves through its stages'
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 1;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 1;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 1;
SELECT d.id, d.title, s.code AS stage, s.semantics FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id;
