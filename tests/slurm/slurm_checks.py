#!/usr/bin/env python3
"""Checks used by tests/slurm/run_local_slurm.sh (standard library only).

  slurm_checks.py jobs LOGFILE
      From a Snakemake log of a run with `--workflow-profile profiles/slurm`: every job of a
      non-local rule must have been submitted with sbatch ("Job N has been submitted with SLURM
      jobid M"), no local rule may have been, and `sacct` must list every SLURM job id of the
      run (job name = the plugin's run id) as COMPLETED. Prints a table of the jobs.

  slurm_checks.py manifest DIR BEFORE EXCLUDE_REGEX
      sha256 of every file under DIR that is not listed in the file BEFORE (the files present
      before the run) and whose relative path does not match EXCLUDE_REGEX. One line per file:
      "<sha256>  <relative path>", sorted.

  slurm_checks.py compare LOCAL_DIR SLURM_DIR BEFORE EXCLUDE_REGEX
      Default output comparison: the same new files in both runs, with the same bytes, except
      that run-time measurements may differ: in *.json files, keys matching
      $COMPARE_IGNORE_KEYS are left out before comparing the parsed documents; in text reports
      (*.md, *.txt, *.rst, *.html), lines matching $COMPARE_IGNORE_LINES are left out. Every
      other file (datasets, arrays, models, figures) must be byte-identical (sha256).
"""

import hashlib
import json
import os
import re
import subprocess
import sys

RULE_RE = re.compile(r"^(local)?(rule|checkpoint) (\S+):\s*$")
JOBID_RE = re.compile(r"^\s+jobid: (\d+)\s*$")
SUBMIT_RE = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
ARRAY_RE = re.compile(r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)\. "
                      r"The individual task IDs are (\d+)-(\d+)")
RUNID_RE = re.compile(r"SLURM run ID: (\S+)")


def parse_log(path):
    """Return ({smk jobid: (rule, is_local)}, {smk jobid: [slurm ids]}, run ids)."""
    jobs, submitted, run_ids = {}, {}, []
    pending = None  # (rule, is_local) waiting for its "jobid:" line
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            m = RULE_RE.match(line)
            if m:
                pending = (m.group(3), bool(m.group(1)))
                continue
            m = JOBID_RE.match(line)
            if m and pending is not None:
                jobs[int(m.group(1))] = pending
                pending = None
                continue
            if not line.strip():
                pending = None
            m = SUBMIT_RE.search(line)
            if m:
                submitted.setdefault(int(m.group(1)), []).append(m.group(2))
            m = ARRAY_RE.search(line)
            if m:  # one sbatch --array for several jobs: task k of the array is the k-th job id
                first = int(m.group(3))
                for k, jid in enumerate(m.group(1).split(",")):
                    submitted.setdefault(int(jid), []).append(f"{m.group(2)}_{first + k}")
            m = RUNID_RE.search(line)
            if m and m.group(1) not in run_ids:
                run_ids.append(m.group(1))
    return jobs, submitted, run_ids


def sacct_rows(run_id):
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--name", run_id, "--starttime", "now-7days",
         "--format", "JobIDRaw,JobID,State,ExitCode,Partition,Account,ReqCPUS,ReqMem,Timelimit,Comment%80"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) >= 10:
            rows.append(parts)
    return rows


def cmd_jobs(logfile):
    jobs, submitted, run_ids = parse_log(logfile)
    errors = []
    remote = {j: r for j, (r, local) in jobs.items() if not local}
    local = {j: r for j, (r, local) in jobs.items() if local}
    if not jobs:
        errors.append("no job found in the log: nothing ran, the check would be vacuous")
    if not remote:
        errors.append("no non-local job ran: nothing went through SLURM")
    if not run_ids:
        errors.append("no 'SLURM run ID' in the log: the slurm executor was not used")
    for j, r in sorted(remote.items()):
        if j not in submitted:
            errors.append(f"job {j} (rule {r}) ran but was not submitted to SLURM")
    for j, r in sorted(local.items()):
        if j in submitted:
            errors.append(f"local job {j} (rule {r}) was submitted to SLURM")
    for j in sorted(submitted):
        if j not in jobs:
            errors.append(f"SLURM submission for unknown Snakemake job {j}")
    slurm_ids = sorted({s.split("_")[0] for ids in submitted.values() for s in ids}, key=int)
    rows = []
    for run_id in run_ids:
        rows.extend(sacct_rows(run_id))
    by_jobid = {r[1]: r for r in rows}  # JobID: "<id>", or "<array id>_<task>" for array tasks
    print(f"SLURM run id(s): {', '.join(run_ids)}")
    print(f"{'smk':>4} {'rule':<20} {'slurm':>6} {'state':<10} {'exit':<5} {'part':<8} {'account':<12} "
          f"{'cpus':>4} {'mem':>6} {'time':>9}")
    for j in sorted(jobs):
        rule, is_local = jobs[j]
        if is_local:
            print(f"{j:>4} {rule:<20} {'-':>6} {'local':<10}")
            continue
        for sid in submitted.get(j, []):
            row = by_jobid.get(sid)
            if row is None:
                errors.append(f"sacct does not list SLURM job {sid} (rule {rule})")
                print(f"{j:>4} {rule:<20} {sid:>6} {'MISSING':<10}")
                continue
            print(f"{j:>4} {rule:<20} {sid:>6} {row[2]:<10} {row[3]:<5} {row[4]:<8} {row[5]:<12} "
                  f"{row[6]:>4} {row[7]:>6} {row[8]:>9}")
    for row in rows:
        if row[2] != "COMPLETED":
            errors.append(f"SLURM job {row[1]} ended {row[2]} (exit {row[3]}, {row[9]})")
    print(f"{len(remote)} job(s) ran in SLURM ({len(slurm_ids)} sbatch submission(s), "
          f"{len(rows)} sacct record(s)), {len(local)} local job(s)")
    for e in errors:
        print("ERROR:", e, file=sys.stderr)
    return 1 if errors else 0


def manifest(root, before_file, exclude):
    with open(before_file) as fh:
        before = {line.rstrip("\n") for line in fh}
    pat = re.compile(exclude) if exclude else None
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel in before or (pat is not None and pat.search(rel)) or not os.path.isfile(full):
                continue
            h = hashlib.sha256()
            with open(full, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            lines.append(f"{h.hexdigest()}  {rel}")
    return sorted(lines, key=lambda s: s[66:])


def cmd_manifest(root, before_file, exclude):
    for line in manifest(root, before_file, exclude):
        print(line)
    return 0


# run-time measurements that legitimately differ between two runs of the same computation
IGNORE_KEYS = os.environ.get(
    "COMPARE_IGNORE_KEYS",
    r"(?i)((^|_)(seconds|elapsed|duration|walltime|wall_time|timestamp|date|host|hostname|"
    r"steps_per_second|time_s|total_time)$|elapsed|time \[s\]|steps per second|"
    # the code version is read from the installed package at run time; it is the same for both runs
    # unless the working tree changes while they run
    r"^git_commit$|"
    # a QPY blob's sha256 in a model's integrity record: QPY stores each Parameter's random UUID, so the bytes differ
    # between processes; the circuits themselves are compared instruction by instruction (_qpy_text)
    r"\.qpy$|"
    # meta.json's sha256 in a model's integrity record (which covers every member since issue 26.7): meta.json holds
    # the provenance's date and training time; meta.json itself is compared with those keys stripped
    r"^meta\.json$)",
)
DERIVED = ("MANIFEST.sha256",)  # checksums of the other outputs: equal when they are
IGNORE_LINES = os.environ.get(
    "COMPARE_IGNORE_LINES", r"(?i)(time \(s\)|seconds|elapsed|per second|wall time)"
)
TEXT_REPORTS = (".md", ".txt", ".rst", ".html")


def _strip_keys(obj, pat):
    if isinstance(obj, dict):
        return {k: _strip_keys(v, pat) for k, v in obj.items() if not pat.search(str(k))}
    if isinstance(obj, list):
        return [_strip_keys(v, pat) for v in obj]
    return obj


def _qpy_text(data):
    import io

    from qiskit import qpy

    circuits = qpy.load(io.BytesIO(data))
    return [[(ins.operation.name, [str(p) for p in ins.operation.params], [c.find_bit(q).index for q in ins.qubits])
             for ins in c.data] for c in circuits]


def _csv_rows(path, pat):
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return rows
    keep = [i for i, h in enumerate(rows[0]) if not pat.search(h)]
    return [[r[i] for i in keep if i < len(r)] for r in rows]


def _equal_ignoring_timings(path_a, path_b):
    """None if not comparable that way, else True/False."""
    if os.path.basename(path_a) in DERIVED:
        return True
    if path_a.endswith(".csv"):
        pat = re.compile(IGNORE_KEYS)
        return _csv_rows(path_a, pat) == _csv_rows(path_b, pat)
    if path_a.endswith(".md") and os.path.exists(path_a[:-3] + ".csv"):
        # a Markdown table rendered from the CSV next to it: equal when the CSV is
        return _equal_ignoring_timings(path_a[:-3] + ".csv", path_b[:-3] + ".csv")
    if path_a.endswith(".zip"):
        import zipfile

        pat = re.compile(IGNORE_KEYS)
        with zipfile.ZipFile(path_a) as za, zipfile.ZipFile(path_b) as zb:
            if sorted(za.namelist()) != sorted(zb.namelist()):
                return False
            for name in za.namelist():
                a, b = za.read(name), zb.read(name)
                if name.endswith(".json"):
                    if _strip_keys(json.loads(a), pat) != _strip_keys(json.loads(b), pat):
                        return False
                elif name.endswith(".qpy"):
                    # QPY stores each Parameter's random UUID: compare the circuits, not the bytes
                    if _qpy_text(a) != _qpy_text(b):
                        return False
                elif a != b:
                    return False
        return True
    if path_a.endswith(".json"):
        pat = re.compile(IGNORE_KEYS)
        try:
            with open(path_a) as fa, open(path_b) as fb:
                return _strip_keys(json.load(fa), pat) == _strip_keys(json.load(fb), pat)
        except (ValueError, UnicodeDecodeError):
            return None
    if path_a.endswith(TEXT_REPORTS):
        pat = re.compile(IGNORE_LINES)
        try:
            with open(path_a) as fa, open(path_b) as fb:
                la = [line for line in fa if not pat.search(line)]
                lb = [line for line in fb if not pat.search(line)]
            return la == lb
        except UnicodeDecodeError:
            return None
    return None


def cmd_compare(local_dir, slurm_dir, before_file, exclude):
    a = manifest(local_dir, before_file, exclude)
    b = manifest(slurm_dir, before_file, exclude)
    da = {line[66:]: line[:64] for line in a}
    db = {line[66:]: line[:64] for line in b}
    bad = same = 0
    relaxed = []
    for rel in sorted(set(da) | set(db)):
        if rel not in db:
            print(f"only in the local run: {rel}", file=sys.stderr)
            bad += 1
        elif rel not in da:
            print(f"only in the SLURM run: {rel}", file=sys.stderr)
            bad += 1
        elif da[rel] == db[rel]:
            same += 1
        elif _equal_ignoring_timings(os.path.join(local_dir, rel), os.path.join(slurm_dir, rel)):
            relaxed.append(rel)
        else:
            print(f"differs: {rel}", file=sys.stderr)
            bad += 1
    if not da:
        print("no output file to compare (local run produced nothing)", file=sys.stderr)
        bad += 1
    for rel in relaxed:
        print(f"  equal up to run-time measurements: {rel}")
    print(f"compared {len(set(da) | set(db))} output file(s): {same} byte-identical, "
          f"{len(relaxed)} equal up to run-time measurements, {bad} difference(s)")
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "jobs" and len(argv) == 3:
        return cmd_jobs(argv[2])
    if len(argv) == 5 and argv[1] == "manifest":
        return cmd_manifest(*argv[2:])
    if len(argv) == 6 and argv[1] == "compare":
        return cmd_compare(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
