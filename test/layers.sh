#!/usr/bin/env bash
# The layers of src/ (src/README.md): each folder may use only the folders
# listed for it below.  Checked two ways, after a build:
#   symbols   every undefined symbol of an object file (nm) that another
#             object file of the extension defines is a use of that file's
#             folder;
#   includes  every #include "folder/file.h" in src/ is a use of that folder.
# A use not in the table fails, and so does a folder the table does not
# know (a new folder must be placed in the layers first).
#
#   bash test/layers.sh [SRC_DIR]     (default: src, objects built by make)
# Prints one line per check and "layers: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-src}

python3 - "$src" <<'PY'
import glob, os, re, subprocess, sys

src = sys.argv[1]

# The allowed uses, bottom up.  "." is src/crm_automation.c (_PG_init), the
# only file above every layer.  Keep in step with src/README.md.
ALLOWED = {
    "core":      [],
    "expr":      ["core"],
    "actions":   ["core", "expr"],
    "engine":    ["core", "expr", "actions"],
    "triggers":  ["core", "expr", "actions", "engine"],
    "processes": ["core", "expr", "actions", "engine"],
    "admin":     ["core", "expr", "actions", "engine", "triggers", "processes"],
    "delivery":  ["core"],
    ".":         ["core", "expr", "actions", "engine", "triggers", "processes",
                  "admin", "delivery"],
}

passed = failed = 0

def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok - " + what)
    else:
        failed += 1
        print("not ok - " + what)
        if detail:
            print(detail)

def folder_of(path):
    rel = os.path.relpath(path, src)
    return rel.split(os.sep)[0] if os.sep in rel else "."

# The table itself has no cycle (a DFS over it).
def acyclic():
    state = {}
    def visit(n):
        if state.get(n) == 1:
            return False
        if state.get(n) == 2:
            return True
        state[n] = 1
        if not all(visit(m) for m in ALLOWED.get(n, [])):
            return False
        state[n] = 2
        return True
    return all(visit(n) for n in ALLOWED)
check(acyclic(), "the table of layers has no cycle")

sources = sorted(glob.glob(os.path.join(src, "*.c")) +
                 glob.glob(os.path.join(src, "*", "*.c")) +
                 glob.glob(os.path.join(src, "*", "*.h")))
unknown = sorted({folder_of(f) for f in sources} - set(ALLOWED))
check(not unknown, "every folder of src/ is a layer",
      "  folders not in the table: " + ", ".join(unknown))
deeper = sorted(glob.glob(os.path.join(src, "*", "*", "*.[ch]")))
check(not deeper, "no source deeper than src/LAYER/",
      "  " + "\n  ".join(deeper))

# Symbols.
objs = [f[:-2] + ".o" for f in sources if f.endswith(".c")]
missing = [o for o in objs if not os.path.exists(o)]
check(not missing, "every source file has its object file (run make first)",
      "  missing: " + " ".join(missing))
defs, uses = {}, {}
for o in objs:
    if not os.path.exists(o):
        continue
    out = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
    uses[o] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRCVWG":
            defs[parts[2]] = o
        elif len(parts) == 2 and parts[0] == "U":
            uses[o].add(parts[1])
bad = []
for o, syms in sorted(uses.items()):
    fo = folder_of(o)
    for s in sorted(syms):
        d = defs.get(s)
        if d is None:
            continue
        fd = folder_of(d)
        if fd != fo and fd not in ALLOWED.get(fo, []):
            bad.append("  %s uses %s of %s (%s -> %s)" % (
                os.path.relpath(o, src), s, os.path.relpath(d, src), fo, fd))
check(not bad, "symbols: every call between folders goes down the layers",
      "\n".join(bad))

# Includes.
bad = []
inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
for f in sources:
    fo = folder_of(f)
    for name in inc.findall(open(f, encoding="utf-8").read()):
        if "/" not in name:
            if os.path.exists(os.path.join(src, name)) or \
               os.path.exists(os.path.join(os.path.dirname(f), name)):
                bad.append("  %s includes \"%s\": name the folder" % (
                    os.path.relpath(f, src), name))
            continue
        fd = name.split("/")[0]
        if fd not in ALLOWED:
            continue                # a PostgreSQL header such as utils/jsonb.h
        if fd != fo and fd not in ALLOWED.get(fo, []):
            bad.append("  %s includes \"%s\" (%s -> %s)" % (
                os.path.relpath(f, src), name, fo, fd))
check(not bad, "includes: every header from another folder is from a layer below",
      "\n".join(bad))

print("layers: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
