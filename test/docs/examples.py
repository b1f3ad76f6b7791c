#!/usr/bin/env python3
"""Runs the SQL examples of README.md and docs/*.md, as a reader would.

    examples.py [--write] [--smtp-port N] [--http-port N] ROOT [FILE...]

Each file runs on a fresh database of its own (created, then dropped with
the roles its examples created; ALTER SYSTEM settings are reset after it),
its blocks in order.  The conventions, which a doc writer follows:

  ```sql            a block that runs; each block runs with psql -f in a
                    session of its own, and must succeed
  ```output         right after a ```sql block (blank lines between are
                    allowed): what psql prints for it, compared line by
                    line (trailing blanks ignored).  Errors, notices and
                    warnings are shown as psql shows them without the
                    CONTEXT and LOCATION lines.  Leave it out when the
                    output does not matter.
  <!-- fails: 22023 -->
                    just before a ```sql block: the block must stop at an
                    error with this SQLSTATE
  <!-- docs-test: skip because REASON -->
                    just before a ```sql block that cannot run here
                    (keep these rare)

Other fences (sh, text, json, ...) are not run.  In SQL blocks,
127.0.0.1:8025 and 127.0.0.1:8080 are the local SMTP and HTTP sinks the
docs tell a reader to start; the test starts its own and puts their ports
there.  With --write, the ```output blocks are rewritten with what psql
printed (to review with git diff).

Prints "not ok - FILE:LINE: why" with a diff for each block that fails, one
"ok - FILE: N blocks" line per file for those that pass, and ends with
"docs_examples: N passed, M failed" (N and M count blocks).
"""
import argparse
import difflib
import glob
import os
import re
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^```\s*([A-Za-z0-9_-]*)\s*$")
FAILS = re.compile(r"^<!--\s*fails:\s*([0-9A-Z]{5})\s*-->\s*$")
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip because\s+(.+?)\s*-->\s*$")


class Block:
    def __init__(self, line, sql):
        self.line = line            # 1-based line of the opening fence
        self.sql = sql
        self.fails = None
        self.skip = None
        self.output = None          # expected lines, or None
        self.output_span = None     # (first, last) 0-based lines of its content


def parse(text):
    """The ```sql blocks of a markdown text, with their markers and outputs."""
    lines = text.split("\n")
    blocks = []
    i = 0
    last_comment = None         # (line index, text) of the last HTML comment line
    last_sql = None             # the last sql block, while only blank lines follow it
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            s = lines[i].strip()
            if s.startswith("<!--"):
                last_comment = (i, s)
            if s:
                last_sql = None
            i += 1
            continue
        lang = m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        body = lines[i + 1:j]
        if lang == "sql":
            b = Block(i + 1, "\n".join(body) + "\n")
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            if last_comment is not None and last_comment[0] == k:
                c = last_comment[1]
                if FAILS.match(c):
                    b.fails = FAILS.match(c).group(1)
                elif SKIP.match(c):
                    b.skip = SKIP.match(c).group(1)
                elif "fails" in c or "docs-test" in c:
                    raise SystemExit("line %d: marker not understood: %s" % (k + 1, c))
            blocks.append(b)
            last_sql = b
        elif lang == "output":
            if last_sql is None:
                raise SystemExit("line %d: an ```output block must follow a ```sql block" % (i + 1))
            last_sql.output = body
            last_sql.output_span = (i + 1, j - 1)
            last_sql = None
        else:
            last_sql = None
        last_comment = None
        i = j + 1
    return blocks, lines


def psql(db, args, sql=None, check=True):
    cmd = ["psql", "-X", "-q", "-d", db] + args
    r = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit("psql failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return r


def scalar(sql, db="postgres"):
    return psql(db, ["-A", "-t", "-c", sql]).stdout.strip()


STDERR_PREFIX = re.compile(r"^psql:[^\n]*?:\d+: ")
LEVEL_CODE = re.compile(r"^(ERROR|WARNING|NOTICE|INFO|FATAL):  ([0-9A-Z]{5}): ")


def run_block(db, block, ports):
    sql = block.sql
    for doc_port, port in ports.items():
        if port:
            sql = sql.replace("127.0.0.1:%d" % doc_port, "127.0.0.1:%d" % port)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("\\set VERBOSITY verbose\n\\set SHOW_CONTEXT never\n")
        f.write(sql)
        path = f.name
    os.chmod(path, 0o644)
    try:
        # stderr into the same pipe: psql flushes its results before a
        # notice or an error, so they come in the order a reader sees them
        r = subprocess.run(["psql", "-X", "-q", "-d", db, "-v", "ON_ERROR_STOP=1", "-f", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        os.unlink(path)
    sqlstate = None
    out = []
    for line in r.stdout.split("\n"):
        line = STDERR_PREFIX.sub("", line)
        if line.startswith("LOCATION:  "):
            continue
        m = LEVEL_CODE.match(line)
        if m:
            if m.group(1) == "ERROR" and sqlstate is None:
                sqlstate = m.group(2)
            line = "%s:  %s" % (m.group(1), line[m.end():])
        out.append(line)
    return r.returncode, sqlstate, normalise(out), r.stdout


def normalise(lines):
    lines = [l.rstrip() for l in lines]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def run_file(root, rel, ports, write):
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
        blocks, lines = parse(f.read())
    passed = failed = 0
    db = "docs_" + re.sub(r"[^a-z0-9]+", "_", rel.lower())
    roles = set(scalar("SELECT string_agg(rolname, ' ') FROM pg_roles").split())
    psql("postgres", ["-c", 'DROP DATABASE IF EXISTS "%s"' % db])
    psql("postgres", ["-c", 'CREATE DATABASE "%s"' % db])
    rewrites = []
    ok_lines = []
    try:
        for b in blocks:
            where = "%s:%d" % (rel, b.line)
            if b.skip:
                print("ok - %s # skip %s" % (where, b.skip))
                continue
            rc, sqlstate, out, raw_err = run_block(db, b, ports)
            problems = []
            if b.fails:
                if rc == 0:
                    problems.append("should fail with %s but succeeded" % b.fails)
                elif sqlstate != b.fails:
                    problems.append("should fail with %s, failed with %s" % (b.fails, sqlstate))
            elif rc != 0:
                problems.append("failed (%s)" % (sqlstate or "psql exit %d" % rc))
            if b.output is not None:
                want = normalise(b.output)
                if want != out:
                    problems.append("output differs")
                if write:
                    rewrites.append((b.output_span, out))
            if problems:
                failed += 1
                print("not ok - %s: %s" % (where, "; ".join(problems)))
                for l in b.sql.rstrip("\n").split("\n")[:6]:
                    print("#   | " + l)
                if b.output is not None and "output differs" in problems:
                    for l in difflib.unified_diff(normalise(b.output), out, "shown", "actual", lineterm="", n=2):
                        print("#   " + l)
                elif rc != 0 or b.fails:
                    for l in out[-8:]:
                        print("#   " + l)
            else:
                passed += 1
                ok_lines.append(b.line)
    finally:
        psql("postgres", ["-c", 'DROP DATABASE IF EXISTS "%s"' % db], check=False)
        for role in sorted(set(scalar("SELECT string_agg(rolname, ' ') FROM pg_roles").split()) - roles):
            psql("postgres", ["-c", 'DROP ROLE "%s"' % role], check=False)
        psql("postgres", ["-c", "ALTER SYSTEM RESET ALL", "-c", "SELECT pg_reload_conf()"], check=False)
    if ok_lines:
        # one line for the blocks that passed keeps the failures in sight
        print("ok - %s: %d blocks (lines %s)" % (rel, len(ok_lines), ", ".join(map(str, ok_lines))))
    if write and rewrites:
        for (first, last), out in sorted(rewrites, reverse=True):
            lines[first:last + 1] = out
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return passed, failed, len(blocks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--smtp-port", type=int, default=0)
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("root")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    files = a.files or ["README.md"] + sorted(
        os.path.relpath(p, a.root) for p in glob.glob(os.path.join(a.root, "docs", "*.md")))
    ports = {8025: a.smtp_port, 8080: a.http_port}
    passed = failed = 0
    for rel in files:
        print("# %s" % rel)
        p, f, n = run_file(a.root, rel, ports, a.write)
        if n == 0:
            print("# %s has no SQL block" % rel)
        passed += p
        failed += f
    print("docs_examples: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
