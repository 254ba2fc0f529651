#!/usr/bin/env python3
"""Checks that the loom models can fail: weakens one ordering at a time in a scratch copy
of the crate and expects `scripts/loom.sh` to fail there. A mutant that survives means a
model no longer covers that ordering; the script then exits 1.

Each mutant names a file, an anchor (a unique substring of a line at or before the target)
and the text to replace on the first line from the anchor on that contains it. Arguments,
if any, select mutants whose name or file contains one of them.
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MUTANTS = [
    # (name, file, anchor, old, new)
    ("sleeper's eventcount fence", "src/wait/mod.rs",
     "SYNC POINT with the fence in `wake_block_sleeper`", "Ordering::SeqCst", "Ordering::AcqRel"),
    ("waker's eventcount fence", "src/wait/mod.rs",
     "fn wake_block_sleeper", "Ordering::SeqCst", "Ordering::AcqRel"),
    ("wake_all's fence", "src/wait/mod.rs",
     "pub(crate) fn wake_all", "Ordering::SeqCst", "Ordering::AcqRel"),
    ("commit word store", "src/ring/producer.rs",
     "SYNC POINT with the Acquire load of the commit word", "Ordering::Release", "Ordering::Relaxed"),
    ("commit word load", "src/ring/consumer.rs",
     "SYNC POINT with the Release store of the commit word", "Ordering::Acquire", "Ordering::Relaxed"),
    ("tail store", "src/ring/consumer.rs",
     "SYNC POINT with the Acquire load of `tail`", "Ordering::Release", "Ordering::Relaxed"),
    ("tail load", "src/ring/producer.rs",
     "SYNC POINT with the Release store of `tail`", "Ordering::Acquire", "Ordering::Relaxed"),
    ("board slot lock store", "src/board/protocol.rs",
     "SYNC POINT with the Acquire load of the lock word in `read_slot`", "Ordering::Release", "Ordering::Relaxed"),
    ("board reader's fence", "src/board/protocol.rs",
     "SYNC POINT with the Release fence in `begin_write`", "Ordering::Acquire", "Ordering::Release"),
]


def mutate(path, anchor, old, new):
    with open(path) as f:
        lines = f.readlines()
    starts = [i for i, line in enumerate(lines) if anchor in line]
    if len(starts) != 1:
        sys.exit(f"{path}: anchor {anchor!r} found {len(starts)} times, expected once")
    for i in range(starts[0], len(lines)):
        if old in lines[i]:
            lines[i] = lines[i].replace(old, new, 1)
            with open(path, "w") as f:
                f.writelines(lines)
            return
    sys.exit(f"{path}: no {old!r} after anchor {anchor!r}")


def main():
    # loom.sh's own target directory: its dependencies are built already.
    target = os.path.join(ROOT, "target", "loom")
    survivors = []
    with tempfile.TemporaryDirectory(prefix="loom-weakened-") as scratch:
        only = sys.argv[1:]
        for name, rel, anchor, old, new in MUTANTS:
            if only and not any(o in name or o in rel for o in only):
                continue
            copy = os.path.join(scratch, "crate")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
                "target", ".git", "fuzz", "bazel-*"))
            mutate(os.path.join(copy, rel), anchor, old, new)
            env = dict(os.environ, LOOM_TARGET_DIR=target)
            run = subprocess.run(
                ["bash", "scripts/loom.sh"], cwd=copy, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            # A failing model either reports FAILED or, when loom's deadlock panic unwinds
            # through a destructor, aborts the test process: name it from its panic line.
            failed = sorted({l.split("'")[1] for l in run.stdout.splitlines()
                             if l.startswith("thread '") and "loom_tests::" in l})
            if run.returncode == 0:
                survivors.append(name)
                print(f"SURVIVED  {name}: every model passed with it weakened")
            elif not failed or "could not compile" in run.stdout:
                print(run.stdout[-3000:])
                sys.exit(f"{name}: loom.sh failed without a failing model (build error?)")
            else:
                print(f"caught    {name}: {', '.join(failed)}")
    if survivors:
        sys.exit(f"{len(survivors)} weakened ordering(s) went unnoticed")


if __name__ == "__main__":
    main()
