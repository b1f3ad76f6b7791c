#!/usr/bin/env python3
"""Compares the reference in README.md and docs/*.md with the live catalogue.

    reference.py ROOT        (psql reaches the database through PG* and -d crm_it)

Both ways: what the docs list must exist as written, and what the catalogue
has must be listed.  What the docs list, and how (Markdown tables):

  functions   a table row whose first cell starts with
              `crm.name(arg, arg => default)` → `result`
              every argument in order, those with a default written
              `name => default` (the default as the catalogue has it, casts
              left out: `NULL`, `'{}'`, `false`); result: a type as format_type() prints it
              (`bigint`, `void`, `setof text`) or `TABLE (col, col)` for a
              function with OUT columns.  Overloads: one row each.  Not
              listed: names starting with "_" (internal) and functions that
              return `trigger` (trigger bodies, not callable).
  views       a table row whose first cell starts with  view `crm.name`
  settings    rows of a table whose header starts with | setting | default
              | context |: `crm.name`, the default as SHOW prints it
              (`30s`, `''` for empty), and pg_settings.context
  actions     rows of a table whose header starts with | action |: names
              (`a` / `b`), then the parameters (`name`* when required, —
              for none; remarks in parentheses are skipped), then the
              outputs (`name`, —), as crm.robot_actions
  events      rows of a table whose header starts with | event |: name,
              source (free text), parameters as for actions, as
              crm.trigger_events
  process activities
              rows of a table whose header starts with | process activity |
              (the flow activities crm.activity_types lists as run), of one
              whose header starts with | process-only activity | (its
              process_only rows) and of one whose header starts with
              | refused process activity | (each must be refused with 0A000
              when saved)
  activity types
              rows of a table whose header starts with | activity type |:
              the values crm.activity.type accepts (its CHECK constraint)

Also: every link between the docs ([text](file#anchor)) leads to a file of
the repository and, for a Markdown file, to one of its headings.

Prints "ok - ..." or "not ok - ..." per entry, and what to write to fix a
difference, then "docs_reference: N passed, M failed".
"""
import glob
import json
import os
import re
import subprocess
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
DB = os.environ.get("CRM_DOCS_DB", "crm_it")


def sql_json(query):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB, "-c", query],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("psql: " + r.stderr)
    return json.loads(r.stdout.strip() or "null") or []


# ---- the catalogue --------------------------------------------------------

cat_functions = sql_json("""
SELECT json_agg(json_build_object(
	'name', p.proname,
	'args', (SELECT coalesce(json_agg(p.proargnames[i] ORDER BY i), '[]')
	           FROM generate_subscripts(p.proargnames, 1) i
	          WHERE coalesce(p.proargmodes[i], 'i') IN ('i', 'b', 'v')),
	'nargs', p.pronargs,
	'ndefaults', p.pronargdefaults,
	'cols', (SELECT json_agg(p.proargnames[i] ORDER BY i)
	           FROM generate_subscripts(p.proargnames, 1) i
	          WHERE p.proargmodes[i] IN ('o', 'b', 't')),
	'result', CASE WHEN p.proretset THEN 'setof ' ELSE '' END || format_type(p.prorettype, NULL),
	'identity', pg_get_function_identity_arguments(p.oid),
	'arguments', pg_get_function_arguments(p.oid)) ORDER BY p.proname, p.oid)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'crm' AND p.proname NOT LIKE '\\_%' AND p.prorettype <> 'trigger'::regtype""")
cat_views = [v["name"] for v in sql_json(
    "SELECT json_agg(json_build_object('name', table_name) ORDER BY table_name) "
    "FROM information_schema.views WHERE table_schema = 'crm'")]
cat_settings = sql_json(
    "SELECT json_agg(json_build_object('name', name, 'boot_val', boot_val, 'unit', unit, "
    "'vartype', vartype, 'context', context) ORDER BY name) FROM pg_settings WHERE name LIKE 'crm.%'")
cat_actions = sql_json(
    "SELECT json_agg(json_build_object('name', action, 'params', parameters, 'outputs', outputs) ORDER BY action) "
    "FROM crm.robot_actions")
cat_events = sql_json(
    "SELECT json_agg(json_build_object('name', event, 'params', parameters) ORDER BY event) FROM crm.trigger_events")
cat_activity_types = sql_json("""
SELECT json_agg(m[1] ORDER BY m[1])
  FROM pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') m
 WHERE c.conrelid = 'crm.activity'::regclass AND c.contype = 'c'
   AND pg_get_constraintdef(c.oid) ~ '\\mtype\\M'""")


def refused_sqlstate(activity_type):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-d", DB, "-v", "VERBOSITY=verbose", "-c",
                        "SELECT crm.add_process_template('deal', 'docs check', "
                        "'{\"activities\": [{\"type\": \"%s\"}]}')" % activity_type],
                       capture_output=True, text=True)
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):", r.stderr)
    return m.group(1) if m else "none (saved)"


# The flow activities a process runs, and its process-only activities, from
# the catalogue view (what is listed there but not run says so in its note).
cat_process_types = sql_json(
    "SELECT coalesce(json_agg(type ORDER BY type), '[]') FROM crm.activity_types "
    "WHERE kind = 'flow' AND in_processes AND coalesce(note, '') NOT LIKE 'not supported%'")
cat_process_only = sql_json(
    "SELECT coalesce(json_agg(type ORDER BY type), '[]') FROM crm.activity_types WHERE kind = 'process_only'")

# ---- the docs -------------------------------------------------------------

files = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def cells(line):
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    out, cur, tick = [], "", False
    for ch in s:
        if ch == "`":
            tick = not tick
        if ch == "|" and not tick:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def split_top(s):
    """Split an argument list at top-level commas (quotes and brackets kept)."""
    parts, cur, depth, quote = [], "", 0, None
    for ch in s:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def ticked(cell):
    return re.findall(r"`([^`]*)`", cell)


def names_required(cell):
    """`name`* → {name: True}; `name` → {name: False}."""
    out = {}
    while re.search(r"\([^()]*\)", cell):      # remarks in parentheses name no parameter
        cell = re.sub(r"\([^()]*\)", "", cell)
    for m in re.finditer(r"`([A-Za-z_][A-Za-z0-9_]*)`(\*?)", cell):
        out[m.group(1)] = bool(m.group(2))
    return out


doc_functions = []      # (name, args, defaults, result, where)
doc_views = {}
doc_settings = {}
doc_actions = {}
doc_events = {}
doc_process_types = {}
doc_refused_types = {}
doc_process_only = {}
doc_activity_types = {}
FUNC = re.compile(r"^`crm\.([a-z_][a-z0-9_]*)\(([^`]*)\)`\s*(?:→\s*`([^`]*)`)?")
VIEW = re.compile(r"^view `crm\.([a-z_][a-z0-9_]*)`")

for rel in files:
    path = os.path.join(ROOT, rel)
    if not os.path.exists(path):
        continue
    table = None
    fence = False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence or not line.lstrip().startswith("|"):
            table = None
            continue
        c = cells(line)
        where = "%s:%d" % (rel, n)
        if table is None:
            table = re.sub(r"\s*\(.*\)$", "", c[0].replace("`", "").strip().lower())
            if len(c) > 1:
                table2 = c[1].replace("`", "").strip().lower()
            continue
        if re.match(r"^:?-+:?$", c[0]):
            continue
        m = FUNC.match(c[0])
        if m:
            name, args, result = m.group(1), m.group(2), m.group(3)
            argnames, defaults = [], {}
            for a in split_top(args):
                am = re.match(r"^([a-z_][a-z0-9_]*)\s*(?:=>\s*(.*))?$", a)
                if not am:
                    argnames.append("?" + a)
                    continue
                argnames.append(am.group(1))
                if am.group(2) is not None:
                    defaults[am.group(1)] = am.group(2).strip()
            doc_functions.append((name, argnames, defaults, result, where))
            continue
        m = VIEW.match(c[0])
        if m:
            doc_views[m.group(1)] = where
            continue
        if table == "setting" and c[0].startswith("`crm."):
            doc_settings[ticked(c[0])[0]] = (c[1] if len(c) > 1 else "", c[2] if len(c) > 2 else "", where)
        elif table == "action" and len(c) >= 3:
            for a in ticked(c[0]):
                doc_actions[a] = (names_required(c[1]), set(ticked(c[2])), where)
        elif table == "event" and len(c) >= 3:
            for e in ticked(c[0]):
                doc_events[e] = (names_required(c[2]), where)
        elif table == "process activity":
            for t in ticked(c[0]):
                doc_process_types[t] = where
        elif table == "refused process activity":
            for t in ticked(c[0]):
                doc_refused_types[t] = where
        elif table == "process-only activity":
            for t in ticked(c[0]):
                doc_process_only[t] = where
        elif table == "activity type":
            for t in ticked(c[0]):
                doc_activity_types[t] = where

# ---- comparison -----------------------------------------------------------

passed = failed = 0


def ok(what):
    global passed
    passed += 1
    print("ok - " + what)


def bad(what, *fix):
    global failed
    failed += 1
    print("not ok - " + what)
    for f in fix:
        print("#   " + f)


def catalogue_defaults(f):
    """{argument: default as the docs write it} from pg_get_function_arguments."""
    out = {}
    for part in split_top(f["arguments"]):
        m = re.match(r"^(?:(?:IN|OUT|INOUT|VARIADIC)\s+)?([a-z_][a-z0-9_]*)\s.*?\sDEFAULT\s+(.*)$", part)
        if m:
            out[m.group(1)] = re.sub(r"::[a-z ]+(\[\])?", "", m.group(2)).strip()
    return out


def signature(f):
    args = list(f["args"])
    defaults = catalogue_defaults(f)
    shown = [a + " => " + defaults[a] if a in defaults else a for a in args]
    result = ("TABLE (%s)" % ", ".join(f["cols"])) if f["cols"] else f["result"]
    return "`crm.%s(%s)` → `%s`" % (f["name"], ", ".join(shown), result)


def norm_result(r):
    r = re.sub(r"\s+", " ", (r or "").strip())
    m = re.match(r"(?i)^(?:setof )?table ?\((.*)\)$", r)
    if m:
        return "TABLE (" + ", ".join(x.strip() for x in m.group(1).split(",")) + ")"
    return r


seen = set()
for f in cat_functions:
    sig = signature(f)
    docs = [d for d in doc_functions if d[0] == f["name"]]
    exact = [d for d in docs if d[1] == f["args"]]
    if not docs:
        bad("function crm.%s(%s) is not documented" % (f["name"], f["identity"]),
            "add a table row whose first cell is %s to the docs/ file of its topic" % sig)
        continue
    if not exact:
        # An overload documented with other arguments: report once per documented row.
        others = [d for d in docs if not any(d[1] == g["args"] for g in cat_functions if g["name"] == f["name"])]
        if others:
            d = others[0]
            seen.add(d[4])
            bad("function crm.%s: %s documents arguments (%s), the catalogue has (%s)"
                % (f["name"], d[4], ", ".join(d[1]), ", ".join(f["args"])), "write it as " + sig)
        else:
            bad("function crm.%s(%s) (an overload) is not documented" % (f["name"], f["identity"]),
                "add a table row whose first cell is " + sig)
        continue
    want_defaults = catalogue_defaults(f)
    # Overloads with the same argument names (crm.stage): each takes its own row.
    exact.sort(key=lambda d: (d[4] in seen, d[2] != want_defaults))
    d = exact[0]
    seen.add(d[4])
    problems = []
    if d[2] != want_defaults:
        problems.append("defaults: docs (%s), catalogue (%s)"
                        % (", ".join("%s => %s" % kv for kv in sorted(d[2].items())) or "none",
                           ", ".join("%s => %s" % kv for kv in sorted(want_defaults.items())) or "none"))
    want_result = norm_result(("TABLE (%s)" % ", ".join(f["cols"])) if f["cols"] else f["result"])
    if d[3] is None:
        problems.append("no result documented (→ `%s`)" % want_result)
    elif norm_result(d[3]) != want_result:
        problems.append("result: docs `%s`, catalogue `%s`" % (d[3], want_result))
    if problems:
        bad("function crm.%s at %s: %s" % (f["name"], d[4], "; ".join(problems)), "write it as " + sig)
    else:
        ok("function crm.%s(%s)" % (f["name"], ", ".join(f["args"])))
for d in doc_functions:
    if d[4] in seen:
        continue
    if not any(f["name"] == d[0] and f["args"] == d[1] for f in cat_functions):
        if not any(f["name"] == d[0] for f in cat_functions):
            bad("%s documents crm.%s(%s), which does not exist (or is internal: _ prefix, trigger)"
                % (d[4], d[0], ", ".join(d[1])), "remove the row or correct the name")

for v in cat_views:
    if v in doc_views:
        ok("view crm." + v)
    else:
        bad("view crm.%s is not documented" % v, "add a table row whose first cell is: view `crm.%s`" % v)
for v, where in doc_views.items():
    if v not in cat_views:
        bad("%s documents view crm.%s, which does not exist" % (where, v))

UNITS = {"ms": [("d", 86400000), ("h", 3600000), ("min", 60000), ("s", 1000), ("ms", 1)],
         "s": [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)],
         "min": [("d", 1440), ("h", 60), ("min", 1)],
         "kB": [("TB", 1 << 30), ("GB", 1 << 20), ("MB", 1 << 10), ("kB", 1)]}


def shown_default(s):
    """boot_val as SHOW prints it: 30000 ms → 30s."""
    v = s["boot_val"]
    if s["vartype"] == "string":
        return "''" if v == "" else v
    if s["unit"] in UNITS and v not in ("0", "-1"):
        n = int(v)
        for u, k in UNITS[s["unit"]]:
            if n % k == 0:
                return "%d%s" % (n // k, u)
    return v


for s in cat_settings:
    want = shown_default(s)
    row = "| `%s` | `%s` | %s | (who may set it) | (what it does) |" % (s["name"], want, s["context"])
    if s["name"] not in doc_settings:
        bad("setting %s is not documented" % s["name"], "add to the settings table of docs/settings.md: " + row)
        continue
    default, context, where = doc_settings[s["name"]]
    problems = []
    got = (ticked(default) or [default])[0]
    if got != want:
        problems.append("default: docs %s, catalogue %s" % (got, want))
    if context.replace("`", "").strip() != s["context"]:
        problems.append("context: docs %s, catalogue %s" % (context, s["context"]))
    if problems:
        bad("setting %s at %s: %s" % (s["name"], where, "; ".join(problems)), "write it as " + row)
    else:
        ok("setting " + s["name"])
for name, (_, _, where) in doc_settings.items():
    if not any(s["name"] == name for s in cat_settings):
        bad("%s documents setting %s, which does not exist" % (where, name))


def params_text(params):
    return ", ".join("`%s`%s" % (p["name"], "*" if p.get("required") else "") for p in params) or "—"


for a in cat_actions:
    want_params = {p["name"]: bool(p.get("required")) for p in a["params"]}
    want_outputs = set(o for o in (a["outputs"] or "").split(",") if o)
    row = "| `%s` | %s | %s | (effect) |" % (a["name"], params_text(a["params"]),
                                           ", ".join("`%s`" % o for o in sorted(want_outputs)) or "—")
    if a["name"] not in doc_actions:
        bad("action %s is not documented" % a["name"], "add to the actions table of docs/robots.md: " + row)
        continue
    params, outputs, where = doc_actions[a["name"]]
    problems = []
    for p in sorted(set(params) | set(want_params)):
        if p not in want_params:
            problems.append("parameter %s is not in the catalogue" % p)
        elif p not in params:
            problems.append("parameter %s is not documented" % p)
        elif params[p] != want_params[p]:
            problems.append("parameter %s is %s" % (p, "required" if want_params[p] else "optional"))
    if outputs != want_outputs:
        problems.append("outputs: docs (%s), catalogue (%s)" % (", ".join(sorted(outputs)) or "—",
                                                                ", ".join(sorted(want_outputs)) or "—"))
    if problems:
        bad("action %s at %s: %s" % (a["name"], where, "; ".join(problems)), "write it as " + row)
    else:
        ok("action " + a["name"])
for name, (_, _, where) in doc_actions.items():
    if not any(a["name"] == name for a in cat_actions):
        bad("%s documents action %s, which is not in crm.robot_actions" % (where, name))

for e in cat_events:
    want_params = {p["name"]: bool(p.get("required")) for p in e["params"]}
    row = "| `%s` | (source) | %s | (payload) |" % (e["name"], params_text(e["params"]))
    if e["name"] not in doc_events:
        bad("trigger event %s is not documented" % e["name"], "add to the events table of docs/triggers.md: " + row)
        continue
    params, where = doc_events[e["name"]]
    if params != want_params:
        bad("trigger event %s at %s: parameters docs (%s), catalogue (%s)"
            % (e["name"], where, ", ".join("%s%s" % (k, "*" if v else "") for k, v in sorted(params.items())) or "—",
               ", ".join("%s%s" % (k, "*" if v else "") for k, v in sorted(want_params.items())) or "—"),
            "write it as " + row)
    else:
        ok("trigger event " + e["name"])
for name, (_, where) in doc_events.items():
    if not any(e["name"] == name for e in cat_events):
        bad("%s documents trigger event %s, which is not in crm.trigger_events" % (where, name))

for t in cat_process_types:
    if t in doc_process_types:
        ok("process activity " + t)
    else:
        bad("process activity %s is not documented" % t,
            "add a row | `%s` | (keys) | (does) | to the process activity table of docs/processes.md" % t)
for t, where in doc_process_types.items():
    if t not in cat_process_types:
        bad("%s documents process activity %s, which the engine does not list" % (where, t))
for t in cat_process_only:
    if t in doc_process_only:
        ok("process-only activity " + t)
    else:
        bad("process-only activity %s is not documented" % t,
            "add a row | `%s` | (parameters) | (does) | to the process-only activity table of docs/processes.md" % t)
for t, where in doc_process_only.items():
    if t not in cat_process_only:
        bad("%s documents process-only activity %s, which crm.activity_types does not list" % (where, t))
for t, where in sorted(doc_refused_types.items()):
    code = refused_sqlstate(t)
    if code == "0A000":
        ok("refused process activity " + t)
    else:
        bad("%s documents process activity %s as refused (0A000); saving it gives %s" % (where, t, code))

for t in cat_activity_types:
    if t in doc_activity_types:
        ok("activity type " + t)
    else:
        bad("crm.activity type %s is not documented" % t,
            "add a row | `%s` | (meaning) | to the activity type table of docs/data-model.md" % t)
for t, where in doc_activity_types.items():
    if t not in cat_activity_types:
        bad("%s documents crm.activity type %s, which crm.activity does not accept" % (where, t))

# ---- links between the docs ----------------------------------------------

def anchors(path):
    out, fence = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


for rel in files + (["bench/README.md"] if os.path.exists(os.path.join(ROOT, "bench/README.md")) else []):
    path = os.path.join(ROOT, rel)
    if not os.path.exists(path):
        continue
    fence = False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", target):
                bad("%s:%d links outside the repository: %s" % (rel, n, target),
                    "the docs refer only to files of the repository")
                continue
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(dest):
                bad("%s:%d links to %s, which does not exist" % (rel, n, target))
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                bad("%s:%d links to #%s, which is no heading of %s" % (rel, n, anchor, os.path.relpath(dest, ROOT)))
            else:
                ok("link %s:%d %s" % (rel, n, target))

print("docs_reference: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
