-- The expression language (SPEC §6), tried from SQL with crm.evaluate.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;
\set VERBOSITY default

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
INSERT INTO crm.company (id, title) VALUES (101, 'Acme');
INSERT INTO crm.contact (id, name, phone) VALUES (101, 'Claire', '+33 6 00 00 00 01');
INSERT INTO crm.deal (id, title, responsible_id, contact_id, company_id, amount, close_date, fields)
VALUES (101, 'Chairs', 2, 101, 101, 4800.50, '2030-03-31', '{"UF_SOURCE": "fair", "UF_SEATS": 12}');
-- Custom fields are registered, so rules that use them can be checked.
SELECT crm.add_field('deal', 'UF_SOURCE', 'Source') > 0 AS registered, crm.add_field('deal', 'UF_SEATS', 'Seats', 'number') > 0 AS registered;

-- Templates: fields, related records, custom fields (any case), references.
SELECT crm.evaluate('{{title}} for {{contact.name}} ({{company.title}}), owner {{responsible.name}}', 'deal', 101);
SELECT crm.evaluate('{{TITLE}} / {=Document:AMOUNT} / {{uf_source}} / {{fields.UF_SEATS}} / {{stage.code}}', 'deal', 101);
SELECT crm.evaluate('{=Variable:x} {=Constant:limit} {=Robot:gen.code} {=Event:form}', NULL, NULL,
	'{"variables": {"x": "X"}, "constants": {"limit": 5000}, "robots": {"gen": {"code": "A1"}}, "event": {"form": "contact"}}');
SELECT crm.evaluate('no references at all');
SELECT crm.evaluate('missing: [{{UF_NOPE}}]', NULL, NULL) AS unchecked_without_entity;

-- Formulas: arithmetic with exact numerics, concatenation, comparisons, logic.
SELECT crm.evaluate('={{amount}} * 1.2', 'deal', 101) AS with_tax,
       crm.evaluate('="D_" & {{id}}', 'deal', 101) AS binding,
       crm.evaluate('=(1 + 2) * 3 - 4 / 2') AS arithmetic,
       crm.evaluate('=0.1 + 0.2') AS exact,
       crm.evaluate('=-{{amount}}', 'deal', 101) AS negated;
SELECT crm.evaluate('={{amount}} >= 4800 and not ({{title}} = "Desks")', 'deal', 101) AS logic,
       crm.evaluate('="10" = 10') AS text_vs_number,
       crm.evaluate('="abc" < "abd"') AS text_order,
       crm.evaluate('={{close_date}} > "2030-01-01"', 'deal', 101) AS dates;
SELECT crm.evaluate('Total: {{=round({{amount}} * 2, 0)}} EUR', 'deal', 101) AS embedded;

-- Functions.
SELECT crm.evaluate('=if({{amount}} >= 5000, "big", "small")', 'deal', 101) AS if_,
       crm.evaluate('=concat("a", 1, true)') AS concat_,
       crm.evaluate('=upper("été") & lower("ÉTÉ")') AS case_,
       crm.evaluate('=substr("automation", 1, 4) & "|" & substr("automation", 5)') AS substr_,
       crm.evaluate('=length("héllo")') AS length_,
       crm.evaluate('="[" & trim("  x  ") & "]"') AS trim_;
SELECT crm.evaluate('=round(2.567, 2)') AS round_, crm.evaluate('=abs(-3)') AS abs_,
       crm.evaluate('=min(3, 1, 2)') AS min_, crm.evaluate('=max(3, 1, 2)') AS max_,
       crm.evaluate('=number("42.5") + 1') AS number_;
SELECT crm.evaluate('=dateadd({{close_date}}, "-1 day")', 'deal', 101) AS day_before,
       crm.evaluate('=datediff("2030-01-01", {{close_date}})', 'deal', 101) AS days_between,
       crm.evaluate('=datediff("2030-01-01 00:00", "2030-01-01 06:30", "hours")') AS hours_between,
       crm.evaluate('=date("2030-05-06 10:00:00")') AS date_,
       crm.evaluate('={{close_date}} + 1', 'deal', 101) AS plus_one_day,
       crm.evaluate('=today() = date(now())') AS today_;

-- Nulls: a missing field is empty in text, null in arithmetic, false in tests.
SELECT crm.evaluate('[{{begin_date}}]', 'deal', 101) AS empty_text,
       crm.evaluate('={{begin_date}} + 1', 'deal', 101) IS NULL AS null_arith,
       crm.evaluate('={{begin_date}} = null', 'deal', 101) AS is_null,
       crm.evaluate('={{begin_date}} > 1', 'deal', 101) AS null_compare,
       crm.evaluate('="a" & null & "b"') AS null_concat;

-- Conditions: formula strings and the JSON form.
SELECT crm.test_condition('"{{amount}} > 1000"', 'deal', 101) AS formula,
       crm.test_condition('"=false"') AS leading_equals,
       crm.test_condition('{"all": [{"field": "amount", "op": ">=", "value": 4800},
                                    {"field": "title", "op": "contains", "value": "chair"}]}', 'deal', 101) AS all_,
       crm.test_condition('{"any": [{"field": "UF_SOURCE", "op": "in", "value": ["web", "fair"]},
                                    {"field": "amount", "op": "<", "value": 0}]}', 'deal', 101) AS any_,
       crm.test_condition('{"all": [{"field": "begin_date", "op": "empty"},
                                    {"field": "contact.phone", "op": "!empty"},
                                    {"any": [{"field": "title", "op": "!contains", "value": "desk"}]}]}', 'deal', 101) AS nested,
       crm.test_condition('{"all": []}') AS all_of_nothing,
       crm.test_condition('{"any": []}') AS any_of_nothing;

-- Errors: syntax with positions, unknown functions and fields, runtime failures.
SELECT crm.evaluate('=1 +');
SELECT crm.evaluate('=(1 + 2');
SELECT crm.evaluate('="open');
SELECT crm.evaluate('=foo(1)');
SELECT crm.evaluate('=round()');
SELECT crm.evaluate('=amount * 2');
SELECT crm.evaluate('{{title');
SELECT crm.evaluate('{=Nowhere:x}');
SELECT crm.evaluate('=1 / ({{amount}} - 4800.50)', 'deal', 101);
SELECT crm.evaluate('=number("twelve")');
SELECT crm.check_expression('{{no_such_field}}', 'deal');
SELECT crm.check_expression('{{contact.no_such}}', 'deal');
SELECT crm.check_expression('{{company.title}}', 'lead') AS lead_has_company_link;
SELECT crm.check_expression('{{fields.UF_UNKNOWN}}', 'deal');
SELECT crm.test_condition('{"all": [{"field": "amount", "op": "~", "value": 1}]}');
SELECT crm.test_condition('{"all": [{"op": "=", "value": 1}]}');
SELECT crm.test_condition('[1]');
