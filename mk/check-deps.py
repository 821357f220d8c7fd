#!/usr/bin/python3
"""Checks that mk/deps.sh installs everything the build and the tests use.

A fresh machine runs `make run` or `make test` once; whatever the build needs
must come from a package that mk/deps.sh names, or from a package those depend
on (Depends and Pre-Depends, never Recommends: deps.sh installs with
--no-install-recommends), or from a package every Debian system has (Essential,
or Priority required). A
header or library that is on this machine only by chance (installed by hand, or
pulled in by a Recommends) passes `make` here and fails on a fresh machine;
this check finds it on any machine that has the packages installed.

What is checked, each mapped to its Debian package with `dpkg -S`:
  - every header any C file of the build includes (`cc -M` with the build's
    flags), outside the repository;
  - every pkg-config module the Makefile asks for (its .pc file);
  - every library the binaries link (-l flags);
  - the commands the build, the tests and the scripts run (COMMANDS below).

Usage: mk/check-deps.py [--deps FILE]   (default mk/deps.sh)
Prints one line per finding and exits 1 when there is any, else prints a
summary and exits 0. Needs the packages installed (run mk/deps.sh first).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Commands that the Makefile, mk/*.sh, tests/ and bench/ run on the host.
# npm and node come with the nodejs package; kubectl and helm come from mk/tools.sh.
COMMANDS = [
    "cc", "gcc", "make", "pkg-config", "ar", "clang", "clang-format", "clang-tidy",
    "runc", "runsc", "nft", "ip", "openssl", "debootstrap", "unzip", "node", "npm",
    "python3", "mount", "umount", "nsenter", "unshare", "ps", "etcd",
    "docker-registry", "htpasswd", "busybox", "zstd", "skopeo", "umoci", "lua5.4", "buildah",
]
# pytest and yaml are imported by the tests.
PY_MODULES = ["pytest", "yaml"]


def run(cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def deps_packages(path):
    """The names in deps.sh's PACKAGES=( ... ) array."""
    text = open(path).read()
    m = re.search(r"^PACKAGES=\((.*?)^\)", text, re.S | re.M)
    if not m:
        raise RuntimeError(f"{path}: no PACKAGES=( ... ) array")
    names = []
    for line in m.group(1).splitlines():
        line = line.split("#", 1)[0]
        names += line.split()
    return names


def installed_fields():
    """{package: (depends, pre_depends, provides, base)} of installed packages, where base
    is true for what every Debian system has (Essential, or Priority required)."""
    out = run(["dpkg-query", "-W", "-f",
               "${Package}\t${Status}\t${Depends}\t${Pre-Depends}\t${Provides}\t${Essential}"
               "\t${Priority}\n"]).stdout
    pkgs = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 7 or not f[1].endswith(" installed"):
            continue
        pkgs[f[0]] = (f[2], f[3], f[4], f[5] == "yes" or f[6] == "required")
    return pkgs


def dep_names(field):
    """Alternatives groups of a Depends field: [[name, ...], ...]."""
    groups = []
    for group in field.split(","):
        alts = []
        for alt in group.split("|"):
            alt = alt.strip()
            if alt:
                alts.append(re.split(r"[\s(:]", alt, 1)[0])
        if alts:
            groups.append(alts)
    return groups


def closure(roots, pkgs):
    """Installed packages reachable from roots through Depends/Pre-Depends."""
    providers = {}
    for name, (_, _, provides, _) in pkgs.items():
        for group in dep_names(provides):
            for p in group:
                providers.setdefault(p, []).append(name)
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        if p not in pkgs:
            for real in providers.get(p, []):
                todo.append(real)
            seen.add(p)
            continue
        seen.add(p)
        depends, pre, _, _ = pkgs[p]
        for group in dep_names(depends) + dep_names(pre):
            # Any installed alternative satisfies the group; follow all of them.
            for alt in group:
                if alt in pkgs or alt in providers:
                    todo.append(alt)
    return seen


def owners(paths):
    """{path: package} for the paths dpkg knows."""
    result = {}
    paths = sorted(set(paths))
    for i in range(0, len(paths), 200):
        r = run(["dpkg", "-S"] + paths[i:i + 200], check=False)
        for line in r.stdout.splitlines():
            pkg, _, path = line.partition(": ")
            for p in path.split(", "):
                result[p.strip()] = pkg.split(":")[0].split(",")[0].strip()
    return result


def owner_of(path, known):
    """The package that owns path, trying its resolved forms (usrmerge)."""
    for p in (path, os.path.realpath(path), re.sub(r"^/usr(/s?bin|/lib)", r"\1", path)):
        if p in known:
            return known[p]
    return None


def make_vars(*names):
    """The values of the Makefile's variables (its database, nothing built)."""
    out = run(["make", "-s", "-C", REPO, "--no-print-directory", "-pnq", "clean"], check=False).stdout
    values = {}
    for name in names:
        m = re.search(rf"^{name} :?= (.*)$", out, re.M)
        if not m:
            raise RuntimeError(f"the Makefile defines no {name}")
        values[name] = m.group(1).split()
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deps", default=os.path.join(REPO, "mk", "deps.sh"))
    args = ap.parse_args()

    listed = deps_packages(args.deps)
    pkgs = installed_fields()
    missing = [p for p in listed if p not in pkgs]
    findings = [f"mk/deps.sh: {p} is listed but not installed (run mk/deps.sh)" for p in missing]
    base = [n for n, v in pkgs.items() if v[3]]
    ok = closure(listed + base, pkgs)

    # Files to attribute: (path, what needs it).
    needs = []
    mk = make_vars("PKGS", "BASE_CFLAGS", "ALL_C_SOURCES")
    modules = mk["PKGS"] + ["cmocka"]
    cflags = run(["pkg-config", "--cflags"] + modules).stdout.split()
    for mod in modules:
        pcdir = run(["pkg-config", "--variable=pcfiledir", mod]).stdout.strip()
        needs.append((os.path.join(pcdir, mod + ".pc"), f"pkg-config module {mod}"))
    libs = set(run(["pkg-config", "--libs"] + modules).stdout.split()) | {"-lpthread", "-lm"}
    for flag in sorted(libs):
        if flag.startswith("-l"):
            # glibc 2.34 folded libpthread into libc: its -l finds only the .a stub.
            for ext in (".so", ".a"):
                so = run(["cc", f"-print-file-name=lib{flag[2:]}{ext}"]).stdout.strip()
                if os.path.isabs(so):
                    so = os.path.normpath(so)
                    break
            else:
                findings.append(f"library {flag}: not found by the compiler")
                continue
            needs.append((so, f"library {flag}"))

    sources = [os.path.join(REPO, f) for f in mk["ALL_C_SOURCES"]]
    # The build's own -iquote directories (tests/unit's helpers are found beside their files).
    flags = mk["BASE_CFLAGS"]
    iquote = []
    for i, f in enumerate(flags[:-1]):
        if f == "-iquote":
            iquote += ["-iquote", os.path.join(REPO, flags[i + 1])]
    headers = {}
    # One preprocessor run for all the files; per file only to name the one that fails.
    r = run(["cc", "-std=gnu17", "-D_GNU_SOURCE", "-M"] + iquote + cflags + sorted(sources),
            check=False)
    for rule in re.split(r"\n(?=\S)", r.stdout.replace("\\\n", " ")):
        target, _, prereqs = rule.partition(":")
        files = prereqs.split()
        if not files:
            continue
        src = os.path.relpath(os.path.normpath(os.path.join(REPO, files[0])), REPO)
        for h in files[1:]:
            h = os.path.normpath(h if os.path.isabs(h) else os.path.join(REPO, h))
            if not h.startswith(REPO + "/"):
                headers.setdefault(h, src)
    if r.returncode != 0:
        for src in sorted(sources):
            e = run(["cc", "-std=gnu17", "-D_GNU_SOURCE", "-M"] + iquote + cflags + [src],
                    check=False)
            if e.returncode != 0:
                first = e.stderr.strip().splitlines()[0] if e.stderr.strip() else "?"
                findings.append(f"{os.path.relpath(src, REPO)}: does not preprocess: {first}")
    needs += [(h, f"header included by {src}") for h, src in headers.items()]

    for cmd in COMMANDS:
        path = shutil.which(cmd, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if not path:
            findings.append(f"command {cmd}: not installed in /usr/bin or /usr/sbin")
            continue
        needs.append((path, f"command {cmd}"))
    for mod in PY_MODULES:
        r = run(["/usr/bin/python3", "-c", f"import {mod}; print({mod}.__file__)"], check=False)
        if r.returncode != 0:
            findings.append(f"python module {mod}: not importable by /usr/bin/python3")
            continue
        needs.append((r.stdout.strip(), f"python module {mod}"))

    known = owners([p for path, _ in needs
                    for p in (path, os.path.realpath(path),
                              re.sub(r"^/usr(/s?bin|/lib)", r"\1", path))])
    for path, why in needs:
        pkg = owner_of(path, known)
        if pkg is None:
            findings.append(f"{why}: {path} belongs to no Debian package")
        elif pkg not in ok:
            findings.append(f"{why}: {path} comes from {pkg}, which mk/deps.sh does not install")

    for f in sorted(set(findings)):
        print(f"check-deps: {f}")
    if findings:
        return 1
    print(f"check-deps: {len(needs)} headers, modules, libraries and commands all come from "
          f"the {len(listed)} packages in mk/deps.sh or their dependencies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
