#!/usr/bin/env bash
# Fuzzing the expression language: random and deeply nested input fed to
# crm.evaluate, crm.test_condition, crm.check_expression (as crm_user) and
# to the save-time validators through crm.add_robot and crm.add_trigger,
# then items moved through the stages so the saved rules are compiled by the
# rule cache and run.  Inputs: random token strings of the formula grammar
# (unbalanced parentheses, unterminated strings and references, stray
# braces, CR/LF, multibyte characters), grammar-made formulas nested across
# the limit, long chains of one operator across the length limit,
# templates, random JSON conditions (deep groups, many rules, bad operators
# and values), random NULLs and contexts.  Every call may fail; the server
# must not: no backend terminated by a signal, no crash-and-restart lines
# in the server log, the server still answering at the end.
#
# Deterministic: FUZZ_SEED (default 20240611) and FUZZ_CASES (default 1500)
# choose the inputs; the run takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

SEED=${FUZZ_SEED:-20240611}
CASES=${FUZZ_CASES:-1500}

# The statements themselves are not logged when they fail (some are long).
it_begin fuzz_expressions "crm.worker_enabled = off" "log_min_error_statement = panic" \
	"statement_timeout = '5s'"

q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales')"
q "INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1)"
q "UPDATE crm.department SET head_id = 1"
q "INSERT INTO crm.contact (id, name, phone) VALUES (1, E'Cl\u00e9o\r\n{{title}}', '+33 6 00 00 00 01')"
q "INSERT INTO crm.deal (id, title, responsible_id, contact_id, amount, close_date, fields) VALUES
	(1, 'Chairs {{amount}} {=Variable:x}', 2, 1, 4800.50, '2030-03-31', '{\"UF_SOURCE\": \"fair\"}'),
	(2, E'Desks\r\n', 1, NULL, 0, 'infinity', '{}'),
	(3, repeat('x', 100000), 2, 1, -1, '-infinity', '{\"UF_SOURCE\": null}')"
q "SELECT crm.add_field('deal', 'UF_SOURCE', 'Source')" >/dev/null
stages=$(q "SELECT string_agg(s.id::text, ',' ORDER BY s.id) FROM crm.stage s JOIN crm.pipeline p ON p.id = s.pipeline_id WHERE p.entity_type = 'deal'")
actions=$(q "SELECT string_agg(action || ':' || coalesce((SELECT string_agg(p->>'name', ',') FROM jsonb_array_elements(parameters) p), ''), ';') FROM crm.robot_actions")
events=$(q "SELECT string_agg(event, ',') FROM crm.trigger_events")

"$PY" - "$SEED" "$CASES" "$stages" "$actions" "$events" "$IT_DIR" <<'PY'
import json
import random
import sys

seed, cases, stages, actions, events, out = sys.argv[1:7]
rnd = random.Random(int(seed))
cases = int(cases)
stages = [int(s) for s in stages.split(',')]
actions = [(a.split(':')[0], [p for p in a.split(':')[1].split(',') if p]) for a in actions.split(';')]
events = events.split(',')

FIELDS = ['title', 'amount', 'close_date', 'id', 'fields', 'contact.name', 'contact.phone',
          'responsible.name', 'stage.code', 'fields.UF_SOURCE', 'UF_SOURCE', 'uf_source',
          'no_such', 'company.title', 'a.b.c', '', ' title ', 'ti tle', 'title\r\n']
REFS = ['{=Variable:x}', '{=Constant:limit}', '{=Robot:gen.code}', '{=Event:form}',
        '{=Document:AMOUNT}', '{=Parameter:p}', '{=Activity:a.b}', '{=Nope:x}', '{=Robot:x}',
        '{=Variable:}', '{=:x}', '{=Event:subject}']
FUNCS = ['if', 'concat', 'upper', 'lower', 'substr', 'length', 'trim', 'round', 'abs', 'min',
         'max', 'dateadd', 'datediff', 'date', 'now', 'today', 'number', 'nosuch']
OPS = ['+', '-', '*', '/', '&', '=', '==', '!=', '<>', '<', '<=', '>', '>=', ' and ', ' or ',
       '&&', '||']
ODD = ['(', ')', ',', '"', "'", '{{', '}}', '{=', '{', '}', '!', 'not ', '\r\n', '\t', 'é',
       '\u2028', '😀', '.', '..', '1.', '.5', '=', '==', '&&&', '$1', '%s', '\\', '--', 'null',
       'true', 'FALSE', '{{=', '}}}', '{{{']
NUMBERS = ['0', '1', '-1', '2.5', '4294967296', '4294967297', '-4294967296',
           '9223372036854775808', '1' + '0' * 40, '0.000000000000001', '00012', '1.2.3']
STRINGS = ['"a"', '""', '"x""y"', "'single'", '"2030-01-01"', '"infinity"', '"-infinity"',
           '"1 day"', '"-1 day"', '"days"', '"hours"', '"fortnights"', '"12"', '"é\r\n"',
           '"{{title}}"', '"{=Variable:x}"', '"unterminated']


def lit(s):
    """s as an SQL string literal (standard_conforming_strings)."""
    return "'" + s.replace("'", "''") + "'"


def atom():
    r = rnd.random()
    if r < 0.25:
        return rnd.choice(NUMBERS)
    if r < 0.45:
        return rnd.choice(STRINGS)
    if r < 0.7:
        return '{{' + rnd.choice(FIELDS) + '}}'
    if r < 0.85:
        return rnd.choice(REFS)
    return rnd.choice(['true', 'false', 'null', 'now()', 'today()'])


def formula(depth):
    """A grammar-made formula nested depth levels along one spine (the
    other operands stay shallow, so the text grows linearly)."""
    if depth <= 0:
        return atom()
    r = rnd.random()
    if r < 0.3:
        n = rnd.randint(2, 6)
        op = rnd.choice(OPS)
        deep = rnd.randrange(n)
        return op.join(formula(depth - 1) if i == deep else formula(min(depth - 1, 1))
                       for i in range(n))
    if r < 0.5:
        return '(' + formula(depth - 1) + ')'
    if r < 0.6:
        return rnd.choice(['-', 'not ', '!']) + formula(depth - 1)
    f = rnd.choice(FUNCS)
    n = rnd.choice([0, 1, 2, 3, 3, 17, 20])
    deep = rnd.randrange(max(n, 1))
    return f + '(' + ', '.join(formula(depth - 1) if i == deep else formula(min(depth - 1, 1))
                               for i in range(n)) + ')'


def mutate(s):
    """Deletes, duplicates or inserts a few characters or tokens."""
    s = list(s)
    for _ in range(rnd.randint(1, 4)):
        if not s:
            break
        i = rnd.randrange(len(s))
        r = rnd.random()
        if r < 0.4:
            del s[i]
        elif r < 0.7:
            s.insert(i, rnd.choice(ODD + OPS))
        else:
            s.insert(i, s[i])
    return ''.join(s)


def tokens():
    return ''.join(rnd.choice([atom(), rnd.choice(OPS), rnd.choice(ODD), rnd.choice(FUNCS) + '(', ' '])
                   for _ in range(rnd.randint(1, 60)))


def template():
    parts = []
    for _ in range(rnd.randint(1, 12)):
        r = rnd.random()
        if r < 0.3:
            parts.append(rnd.choice(['Deal ', 'x', '\r\n', 'é', ' {', '} ', '{{', '}}', '{=', '=']))
        elif r < 0.6:
            parts.append('{{' + rnd.choice(FIELDS) + '}}')
        elif r < 0.8:
            parts.append(rnd.choice(REFS))
        else:
            parts.append('{{=' + formula(rnd.randint(0, 6)) + '}}')
    return ''.join(parts)


def expression_text():
    """A template, a formula or token soup, mutated at times."""
    r = rnd.random()
    if r < 0.35:
        s = '=' + formula(rnd.randint(0, 12))
    elif r < 0.55:
        s = template()
    elif r < 0.8:
        s = rnd.choice(['=', '']) + tokens()
    else:
        s = '=' + formula(rnd.randint(90, 110))		# across the nesting limit
    if rnd.random() < 0.3:
        s = mutate(s)
    return s


def expression_sql():
    """An SQL expression making an expression text, some of them huge."""
    r = rnd.random()
    if r < 0.75:
        return lit(expression_text())
    n = rnd.choice([50, 99, 100, 101, 150, 1000, 5000, 20000, 100000])
    k = n + rnd.choice([0, 0, -1, 1, -n])			# unbalanced at times
    if r < 0.83:
        opener = rnd.choice(['(', 'abs(', '-', 'not ', '1*(1+', 'if(true,', 'concat(', '{{=('])
        closer = rnd.choice([')', '', '))'])
        return "'=' || repeat(%s, %d) || %s || repeat(%s, %d)" % (
            lit(opener), n, lit(atom()), lit(closer), max(k, 0))
    if r < 0.93:
        # a chain of one operator, within or past the length limit
        op = rnd.choice(['+', '-', '*', '&', ' and ', ' or ', '/', '=', ' + -'])
        n = rnd.choice([10, 1000, 10000, 24999, 49999, 50000, 60000])
        return "'=' || repeat(%s, %d) || '1'" % (lit(rnd.choice(['1', '"a"', '{{amount}}', 'true']) + op), n)
    return "repeat(%s, %d)" % (lit(template()), rnd.choice([1, 100, 5000, 20000]))


def json_value():
    r = rnd.random()
    if r < 0.3:
        return rnd.choice([0, 1, -1, 4800.5, 10 ** 30, 4294967297])
    if r < 0.6:
        return rnd.choice(['fair', '', '{{amount}}', '={{amount}} > 1', '{=Event:form}', '{{',
                           '=(((', 'é\r\n', '2030-01-01', 'infinity'])
    if r < 0.7:
        return rnd.choice([True, False, None])
    if r < 0.85:
        return [json_value() for _ in range(rnd.randint(0, 5))]
    return {'nested': json_value()}


def condition(depth):
    """A JSON condition: groups nested depth levels along one spine, rules
    of every kind."""
    if depth <= 0 or rnd.random() < 0.1:
        rule = {}
        if rnd.random() < 0.95:
            rule['field'] = rnd.choice(FIELDS + REFS + ['{{=1+}}', '{{title', 3, None])
        if rnd.random() < 0.95:
            rule['op'] = rnd.choice(['=', '!=', '>', '>=', '<', '<=', 'contains', '!contains',
                                     'in', '!in', 'empty', '!empty', '~', '', 5])
        if rnd.random() < 0.85:
            rule['value'] = json_value()
        return rule
    key = rnd.choice(['all', 'any', 'all', 'any', 'both', None])
    n = rnd.randint(0, 4)
    deep = rnd.randrange(max(n, 1))
    members = [condition(depth - 1) if i == deep else condition(min(depth - 1, 1)) for i in range(n)]
    if rnd.random() < 0.05:
        members.append(rnd.choice([1, 'x', [], None]))
    if key is None:
        return {'all': members, 'any': members}
    return {key: members}


def condition_sql():
    r = rnd.random()
    if r < 0.55:
        return lit(json.dumps(condition(rnd.choice([0, 1, 2, 4, 8, 98, 99, 100, 120])))) + '::jsonb'
    if r < 0.7:
        return 'to_jsonb(%s::text)' % expression_sql()
    if r < 0.8:
        n = rnd.choice([99, 100, 101, 500, 3000])
        return "(repeat('{\"%s\": [', %d) || %s || repeat(']}', %d))::jsonb" % (
            rnd.choice(['all', 'any']), n, lit(json.dumps(condition(0))), n)
    if r < 0.9:
        n = rnd.choice([10, 5000, 16000, 20000])
        return ("jsonb_build_object('%s', (SELECT jsonb_agg(jsonb_build_object('field', 'amount', "
                "'op', '>', 'value', i)) FROM generate_series(1, %d) i))") % (rnd.choice(['all', 'any']), n)
    return rnd.choice(['NULL', "'null'", "'[1]'", "'1'", "'{}'", "'\"\"'", "'{\"all\": 1}'"])


def item_args():
    r = rnd.random()
    if r < 0.5:
        return "'deal', %d" % rnd.choice([1, 2, 3])
    if r < 0.8:
        return 'NULL, NULL'
    return rnd.choice(["'deal', NULL", "NULL, 1", "'deal', 999", "'nosuch', 1", "'', 1"])


def context_sql():
    return rnd.choice([
        "'{}'", 'NULL', "'[]'", "'\"x\"'", "'{\"variables\": [1]}'", "'{\"variables\": null}'",
        lit(json.dumps({'variables': {'x': json_value()}, 'constants': {'limit': 5000},
                        'robots': {'gen': {'code': json_value()}}, 'event': {'form': json_value()}}))])


with open(out + '/expr.sql', 'w') as f:
    f.write("SET ROLE crm_user;\n")
    for i in range(cases):
        r = rnd.random()
        if r < 0.55:
            f.write('SELECT crm.evaluate(%s, %s, %s);\n' % (expression_sql(), item_args(), context_sql()))
        elif r < 0.85:
            f.write('SELECT crm.test_condition(%s, %s, %s);\n' % (condition_sql(), item_args(), context_sql()))
        else:
            f.write('SELECT crm.check_expression(%s, %s);\n' % (
                expression_sql(), rnd.choice(["'deal'", "'lead'", 'NULL', "'nosuch'"])))
    # oracles: chains within the limits give exact results
    for n in (1, 2, 9999, 24999):
        f.write("SELECT 'oracle sum %d', crm.evaluate('=' || repeat('1+', %d) || '1') = '%d';\n" % (n, n - 1, n))
    f.write("SELECT 'expressions done';\n")
statements = cases + 5 + 1

with open(out + '/defs.sql', 'w') as f:
    for i in range(cases // 5):
        stage = rnd.choice(stages + [0, -1])
        if rnd.random() < 0.6:
            action, params = rnd.choice(actions + [('nosuch', []), ('', [])])
            p = {}
            for name in params:
                if rnd.random() < 0.8:
                    p[name] = rnd.choice([expression_text(), json_value(), template()])
            if rnd.random() < 0.2:
                p['unknown_param'] = 1
            delay = rnd.choice(['NULL', 'NULL', "'{\"after\": \"1 minute\"}'", "'{\"at\": \"close_date\"}'",
                                "'{\"after\": \"{{amount}}\"}'", "'[]'"])
            f.write('SELECT crm.add_robot(%d, %s, %s::jsonb, condition => %s, delay => %s);\n' % (
                stage, rnd.choice([lit(action), 'NULL']) if rnd.random() < 0.1 else lit(action),
                lit(json.dumps(p)) if rnd.random() < 0.95 else 'NULL', condition_sql(), delay))
        else:
            p = {}
            if rnd.random() < 0.5:
                p[rnd.choice(['code', 'fields', 'url', 'form', 'nosuch'])] = rnd.choice(
                    [expression_text(), json_value(), ['title', 'amount'], ['no_such']])
            f.write('SELECT crm.add_trigger(%d, %s, %s::jsonb, condition => %s);\n' % (
                stage, lit(rnd.choice(events + ['nosuch'])) if rnd.random() < 0.95 else 'NULL',
                lit(json.dumps(p)), condition_sql()))
    # the saved rules, compiled by the rule cache and run on every move
    for s in stages:
        f.write('UPDATE crm.deal SET stage_id = %d WHERE id IN (1, 2, 3);\n' % s)
    f.write("SELECT 'definitions done';\n")
    statements += cases // 5 + len(stages) + 1
with open(out + '/count', 'w') as f:
    f.write('%d\n' % statements)
PY

# Runs a generated file; psql exits 2 when the server goes away.
run_file() {
	local rc=0
	psql -X -q -t -A -d crm_it -f "$1" >"$1.out" 2>"$1.err" || rc=$?
	echo "$rc"
}

t0=$(date +%s.%N)
rc_expr=$(run_file "$IT_DIR/expr.sql")
rc_defs=$(run_file "$IT_DIR/defs.sql")
t1=$(date +%s.%N)
n_stmt=$(cat "$IT_DIR/count")
n_err=$(cat "$IT_DIR/expr.sql.err" "$IT_DIR/defs.sql.err" | grep -c '^psql:.*ERROR:' || true)
echo "# seed $SEED: $n_stmt statements in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s, $n_err errors"
echo "# errors by message:"
# (head ends the pipe early: sort may die of SIGPIPE, which is no failure)
cat "$IT_DIR/expr.sql.err" "$IT_DIR/defs.sql.err" | sed -nE 's/^psql:.*ERROR:  //p' \
	| sed -E 's/[0-9]+/N/g; s/"[^"]*"/"…"/g' | sort | uniq -c | sort -rn | head -n 6 | sed 's/^/#   /' || true

# what a crash was running, for the record
grep -A2 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" | cut -c1-400 | sed 's/^/# /' || true
for f in expr defs; do
	grep -B1 -A3 'server closed the connection' "$IT_DIR/$f.sql.err" | head -n 8 | sed 's/^/# /' || true
done

check "the expressions and conditions ran to the end (psql exit 0)" "0" "$rc_expr"
check "the robot and trigger definitions and moves ran to the end (psql exit 0)" "0" "$rc_defs"
check "the last statement of each file answered" "expressions done|definitions done" \
	"$(tail -n 1 "$IT_DIR/expr.sql.out")|$(tail -n 1 "$IT_DIR/defs.sql.out")"
check "long chains within the limits give exact sums" "4" "$(grep -c '^oracle sum [0-9]*|t$' "$IT_DIR/expr.sql.out" || true)"
check "some calls succeeded and some failed" "yes" \
	"$([ "$n_err" -gt 0 ] && [ "$n_err" -lt "$n_stmt" ] && echo yes || echo no)"
check "some random robots and triggers were saved" "yes" \
	"$([ "$(q "SELECT (SELECT count(*) FROM crm.robot) + (SELECT count(*) FROM crm.trigger)")" -gt 0 ] && echo yes || echo no)"
check "no backend was terminated by a signal" "0" \
	"$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" || true)"
check "no server process crash lines in the server log" "0" \
	"$(grep -cE 'server process|all server processes terminated|reinitializing|database system was interrupted' "$CRM_CLUSTER_DIR/server.log" || true)"
check "the server is still up" "1" "$(q "SELECT 1" 2>/dev/null || echo down)"

it_end
