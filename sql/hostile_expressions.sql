-- Hostile input to the expression language (SPEC §6): the nesting and
-- length limits that keep the parser and the evaluator off the end of the
-- stack, NULL arguments, functions at the edges of their arguments, infinite
-- dates, huge strings and text that looks like placeholders.  Each case
-- used to crash the server, drop data silently or wrap around.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);
-- Deal 201 has a title that spells placeholders and an infinite close date;
-- deal 202 closes in the year 290000, near the end of the timestamp range.
INSERT INTO crm.deal (id, title, responsible_id, amount, close_date) VALUES
	(201, E'{{amount}} {=Variable:x} {{=1/0}}\r\nline two', 1, 4800, 'infinity'),
	(202, 'Far', 1, 10, '290000-01-01');

-- Everything below runs as crm_user, the role applications use: none of it
-- may take the server down.
SET ROLE crm_user;

-- Nesting.  20,000 nested parentheses used to overflow the parser's stack
-- and crash the server; the parser now stops at the limit, 100 levels.
SELECT crm.evaluate('=' || repeat('(', 20000) || '1' || repeat(')', 20000));
-- 100 levels are accepted, 101 are not: parentheses, function calls and
-- unary operators each count.
SELECT crm.evaluate('=' || repeat('(', 100) || '1' || repeat(')', 100)) AS hundred_parentheses,
       crm.evaluate('=' || repeat('abs(', 100) || '7' || repeat(')', 100)) AS hundred_calls,
       crm.evaluate('=' || repeat('-', 100) || '7') AS hundred_minus;
SELECT crm.evaluate('=' || repeat('(', 101) || '1' || repeat(')', 101));
SELECT crm.evaluate('=' || repeat('not ', 101) || 'true');
SELECT crm.check_expression('=' || repeat('abs(', 101) || '7' || repeat(')', 101), 'deal');
-- Operators of different precedence nest as well: (1*(1+(1*(1+ ...)))).
SELECT crm.evaluate('=' || repeat('1*(1+', 60) || '1' || repeat(')', 60));
-- An embedded formula is a level of its template.
SELECT crm.evaluate('[{{=' || repeat('(', 99) || '1' || repeat(')', 99) || '}}]') AS embedded_99;
SELECT crm.evaluate('[{{=' || repeat('(', 100) || '1' || repeat(')', 100) || '}}]');

-- Long chains of one operator are one level however long, evaluated in a
-- loop: 10,000 terms of +, -, &, and, or.  "-" keeps to the left.
SELECT crm.evaluate('=' || repeat('1+', 9999) || '1') AS plus_10000,
       crm.evaluate('=' || repeat('10-', 9999) || '1') AS minus_10000,
       length(crm.evaluate('=' || repeat('"ab" & ', 9999) || '"ab"')) AS cat_10000,
       crm.evaluate('=' || repeat('true and ', 9999) || 'true') AS and_10000,
       crm.evaluate('=' || repeat('false or ', 9999) || 'true') AS or_10000,
       crm.evaluate('=' || repeat('2*', 60) || '1') AS times_60;
-- A chain short-circuits: the division by zero at its end is never reached.
SELECT crm.evaluate('=' || repeat('true and ', 5000) || 'false and 1/0 = 1') AS short_circuit;
-- Past the length limit, 50,000 terms, an expression is refused.
SELECT crm.evaluate('=' || repeat('1+', 50000) || '1');
SELECT crm.evaluate(repeat('{{title}}', 60000), 'deal', 201);
-- A template with 10,000 embedded formulas compiles in linear time.
SELECT length(crm.evaluate(repeat('{{=1}}', 10000))) AS formulas_10000;

-- JSON conditions.  A group's rules are one chain: 10,000 rules evaluate.
SELECT crm.test_condition(jsonb_build_object('all',
	(SELECT jsonb_agg(jsonb_build_object('field', 'amount', 'op', '<', 'value', 10000 + i))
	   FROM generate_series(1, 10000) i)), 'deal', 201) AS rules_10000;
-- 300,000 rules are past the length limit.
SELECT crm.test_condition(jsonb_build_object('any',
	(SELECT jsonb_agg(jsonb_build_object('field', 'amount', 'op', '=', 'value', i))
	   FROM generate_series(1, 300000) i)), 'deal', 201);
-- Nested groups: each is a level.  99 groups around a rule are accepted,
-- 100 and 2,000 are not.
SELECT crm.test_condition((repeat('{"all": [', 99) || '{"field": "amount", "op": ">", "value": 0}'
	|| repeat(']}', 99))::jsonb, 'deal', 201) AS groups_99;
SELECT crm.test_condition((repeat('{"all": [', 100) || '{"field": "amount", "op": ">", "value": 0}'
	|| repeat(']}', 100))::jsonb, 'deal', 201);
SELECT crm.test_condition((repeat('{"any": [', 2000) || '{"field": "amount", "op": ">", "value": 0}'
	|| repeat(']}', 2000))::jsonb, 'deal', 201);
-- A formula string as a condition has the same limits.
SELECT crm.test_condition(to_jsonb(repeat('(', 5000) || 'true' || repeat(')', 5000)));

-- Rules are checked at save time against the same limit the evaluator
-- holds to, so a stored robot can no longer crash every move into its stage.
RESET ROLE;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'write_log', '{"text": "deep"}',
	condition => to_jsonb('=' || repeat('(', 20000) || 'true' || repeat(')', 20000)));
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'write_log',
	jsonb_build_object('text', '{{=' || repeat('(', 101) || '1' || repeat(')', 101) || '}}'));
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_call',
	condition => (repeat('{"all": [', 150) || '{"field": "amount", "op": ">", "value": 0}'
		|| repeat(']}', 150))::jsonb);
-- At the limit a robot is saved, and runs when a deal enters its stage.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'write_log', '{"text": "at the limit"}',
	condition => to_jsonb('=' || repeat('(', 100) || 'true' || repeat(')', 100))) IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'write_log',
	jsonb_build_object('text', 'sum ' || '{{=' || repeat('1+', 9999) || '1}}')) IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 202;
SELECT action, status, error FROM crm.item_automation('deal', 202) ORDER BY action, status;
SELECT text FROM crm.history WHERE entity_id = 202 AND text IN ('at the limit', 'sum 10000') ORDER BY text;
SET ROLE crm_user;

-- NULL arguments: a NULL expression or condition gives NULL, a NULL context
-- is an empty one, crm.check_expression (STRICT) returns NULL.
SELECT crm.evaluate(NULL) IS NULL AS null_expression,
       crm.evaluate('{=Variable:x}', NULL, NULL, NULL) = '' AS null_context,
       crm.test_condition(NULL) IS NULL AS null_condition,
       crm.test_condition('"true"', NULL, NULL, NULL) AS null_context_condition,
       crm.check_expression(NULL, 'deal') IS NULL AS check_null_expression,
       crm.check_expression('{{title}}', NULL) IS NULL AS check_null_type;
-- An item id needs its entity type and the other way round; a context is
-- an object whose keys hold objects.
SELECT crm.evaluate('{{title}}', 'deal', NULL);
SELECT crm.evaluate('{{title}}', NULL, 201);
SELECT crm.test_condition('"{{amount}} > 0"', NULL, 201);
SELECT crm.evaluate('x', NULL, NULL, '[1, 2]');
SELECT crm.evaluate('x', NULL, NULL, '"text"');
SELECT crm.test_condition('"true"', NULL, NULL, '{"variables": [1]}');
SELECT crm.evaluate('[{=Variable:x}]', NULL, NULL, '{"variables": null}') AS null_variables;
SELECT crm.test_condition('null');
-- NULLs inside formulas: as SQL, a null argument gives null.
SELECT crm.evaluate('=substr(null, 1)') IS NULL AS substr_null_text,
       crm.evaluate('=substr("abc", null)') IS NULL AS substr_null_start,
       crm.evaluate('=substr("abc", 1, null)') IS NULL AS substr_null_length,
       crm.evaluate('=round(1.5, null)') IS NULL AS round_null_digits,
       crm.evaluate('=dateadd(null, "1 day")') IS NULL AS dateadd_null,
       crm.evaluate('=datediff("2030-01-01", null)') IS NULL AS datediff_null,
       crm.evaluate('=concat(null, "a", null)') AS concat_nulls,
       crm.evaluate('=max(null, 2, null)') AS max_nulls;

-- Variadic functions take every argument: concat, min and max used to stop
-- silently at the 16th.
SELECT crm.evaluate('=concat(' || string_agg(i::text, ', ') || ')') AS concat_20,
       crm.evaluate('=max(' || string_agg(i::text, ', ') || ', 100)') AS max_21,
       crm.evaluate('=min(' || string_agg(i::text, ', ') || ', -1)') AS min_21,
       crm.evaluate('=concat(' || rtrim(repeat('"x", ', 1000), ', ') || ')') = repeat('x', 1000) AS concat_1000
  FROM generate_series(1, 20) i;

-- Integer arguments do not wrap around: a start past 2^32 is past the end
-- of the text (not its first character), a length past 2^32 reaches the end
-- (not zero characters), and numbers beyond bigint (10^30) count exactly.
SELECT crm.evaluate('=substr("abcdef", 4294967297, 2)') = '' AS start_2_32,
       crm.evaluate('=substr("abcdef", 2, 4294967296)') AS length_2_32,
       crm.evaluate('=substr("abcdef", 1000000000000000000000000000000)') = '' AS start_1e30,
       crm.evaluate('=substr("abcdef", -1000000000000000000000000000000, 2000000000000000000000000000000)') AS from_far_before,
       crm.evaluate('=substr("abcdef", -1000000000000000000000000000000, 1000000000000000000000000000003)') AS ends_at_2_far,
       crm.evaluate('=substr("abcdef", -4294967296, 4294967299)') AS ends_at_2;
SELECT crm.evaluate('=substr("abcdef", 2, -4294967296)');
SELECT crm.evaluate('=round(2.567, 4294967296) = 2.567') AS round_many_digits,
       crm.evaluate('=round(2567, -4294967296)') AS round_to_nothing,
       crm.evaluate('=round(2.567, 1000000000000000000000000000000) = 2.567') AS round_1e30;

-- Infinite dates: shown as such, kept by date arithmetic, compared in time;
-- datediff cannot count to them and says so.
SELECT crm.evaluate('{{close_date}}', 'deal', 201) AS close_date,
       crm.evaluate('=dateadd({{close_date}}, "1 day")', 'deal', 201) AS dateadd_,
       crm.evaluate('={{close_date}} + 1', 'deal', 201) AS plus_one,
       crm.evaluate('=date({{close_date}})', 'deal', 201) AS date_,
       crm.evaluate('={{close_date}} > today()', 'deal', 201) AS later,
       crm.evaluate('=date("-infinity")') AS minus_infinity,
       crm.evaluate('=dateadd("infinity", "-1 day")') AS text_infinity;
SELECT crm.evaluate('=datediff(today(), {{close_date}})', 'deal', 201);
SELECT crm.evaluate('=datediff("-infinity", "2030-01-01", "hours")');
-- Finite but far apart: the difference would overflow, and says so.
SELECT crm.evaluate('=datediff("4713-01-01 BC", {{close_date}}, "seconds")', 'deal', 202);
SELECT crm.evaluate('=datediff("2000-01-01", {{close_date}})', 'deal', 202) AS days_to_290000;

-- Huge strings are values like any other.
SELECT length(crm.evaluate('="' || repeat('x', 10000000) || '" & "y"')) AS ten_megabytes,
       length(crm.evaluate(repeat('z', 10000000) || '{{id}}', 'deal', 201)) AS template_10mb;
-- An error in a huge formula quotes only the text around its position.
SELECT crm.evaluate('="' || repeat('x', 100000) || '" + )');
-- Messages quote a multibyte character whole.
SELECT crm.evaluate('=1 é');
SELECT crm.evaluate('{{tïtle}}');

-- CR and LF: whitespace in formulas, kept in templates and values.
SELECT crm.evaluate(E'=1 +\r\n 2\n*\t3') AS crlf_formula,
       replace(crm.evaluate(E'a\r\nb {{id}}\r\n', 'deal', 201), E'\r\n', '<CRLF>') AS crlf_template,
       crm.evaluate(E'{{ title\r\n }}', 'deal', 202) AS crlf_in_reference;

-- Values that spell placeholders stay text: a value is never parsed again.
SELECT replace(crm.evaluate('[{{title}}]', 'deal', 201), E'\r\n', '<CRLF>') AS title,
       crm.evaluate('[{=Variable:x}]', NULL, NULL, '{"variables": {"x": "{{amount}} {=Constant:y} {{=1/0}}"}}') AS variable,
       crm.evaluate('={{title}} & "!"', 'deal', 202) AS formula,
       crm.test_condition('{"all": [{"field": "title", "op": "contains", "value": "Variable:x"}]}', 'deal', 201) AS condition;
RESET ROLE;
