#!/usr/bin/env python3
"""Makes the reference parts of the man pages and the README from the
daemons' option tables (--help=man8, --help=man5, --help=markdown), so the
docs cannot drift from the code.

  docs/gendocs.py --concentrator BIN --agent BIN          rewrite them
  docs/gendocs.py --concentrator BIN --agent BIN --check  exit 1 on drift

Each docs/man/X.in has a line '.\\" @OPTIONS@' or '.\\" @KEYS@' where the
table goes; README.md has the markdown between
'<!-- options: PROGRAM -->' and '<!-- end options -->'. With --check the
pages are also run through groff's warnings (when groff is installed)."""
import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(binary, fmt):
    return subprocess.run([binary, "--help=" + fmt], check=True, capture_output=True,
                          text=True).stdout


def expected(bins):
    out = {}
    for prog, binary in bins.items():
        man8 = run(binary, "man8")
        man5 = run(binary, "man5")
        for page, marker, text in ((f"{prog}.8", '.\\" @OPTIONS@', man8),
                                   (f"{prog}.conf.5", '.\\" @KEYS@', man5)):
            src = open(os.path.join(ROOT, "docs/man", page + ".in")).read()
            if marker not in src:
                sys.exit(f"docs/man/{page}.in: no {marker} line")
            out[f"docs/man/{page}"] = (
                '.\\" Made by docs/gendocs.py from docs/man/' + page + '.in and the '
                'option table: edit those.\n' + src.replace(marker + "\n", text))
    readme = open(os.path.join(ROOT, "README.md")).read()
    for prog, binary in bins.items():
        md = run(binary, "markdown")
        pat = re.compile(r"(<!-- options: %s -->\n).*?(<!-- end options -->)" % re.escape(prog),
                         re.S)
        if not pat.search(readme):
            sys.exit(f"README.md: no '<!-- options: {prog} -->' ... '<!-- end options -->'")
        readme = pat.sub(lambda m: m.group(1) + md + m.group(2), readme)
    out["README.md"] = readme
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--concentrator", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    want = expected({"mptcp-concentrator": a.concentrator, "gw-agent": a.agent})
    bad = 0
    for rel, text in want.items():
        path = os.path.join(ROOT, rel)
        have = open(path).read() if os.path.exists(path) else ""
        if have == text:
            continue
        if not a.check:
            open(path, "w").write(text)
            print(f"wrote {rel}")
            continue
        bad += 1
        print(f"{rel} differs from what the option table makes (run docs/gendocs.py):")
        sys.stdout.writelines(list(difflib.unified_diff(have.splitlines(True), text.splitlines(True),
                                                        rel, "option table", n=1))[:40])
    if a.check and shutil.which("groff"):
        for rel in want:
            if not rel.startswith("docs/man/"):
                continue
            r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(ROOT, rel)],
                               capture_output=True, text=True)
            if r.returncode or r.stderr.strip():
                bad += 1
                print(f"{rel}: groff warnings:\n{r.stderr}")
    if a.check:
        print(f"docs: {len(want)} files checked, {bad} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
