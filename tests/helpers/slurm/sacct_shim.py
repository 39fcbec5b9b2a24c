#!/usr/bin/env python3
"""Minimal `sacct` stand-in for a SLURM cluster that has no slurmdbd.

Without accounting storage the real `sacct` only prints "Slurm accounting storage is disabled"
and exits 1; `sacct --completion` reads the jobcomp/filetxt log but does not understand array
jobs (it prints the raw id, e.g. 5 instead of 4_1, and "Unknown type ArrayJobId").

This shim answers the queries that job-polling tools make, e.g. submitit's
    sacct -o JobID,State,NodeList --parsable2 -j 12 -j 13
from, in order of preference:
  1. `squeue --states=all` (pending, running and recently finished jobs, kept MinJobAge seconds),
  2. the jobcomp/filetxt log named by JobCompLoc in $SLURM_CONF (every finished job, also after
     slurmctld has forgotten it; the last record of a job wins, so a requeued job ends as its
     final state).
Array tasks are reported as <ArrayJobId>_<TaskId>, as real sacct does.
If the cluster has real accounting (AccountingStorageType is not none) it execs the real sacct.
Supported options: -j/--jobs, -o/--format, -p/--parsable, -P/--parsable2, -n/--noheader,
-X/--allocations, -a/--allusers, -S/-E (ignored). Fields: JobID, JobIDRaw, JobName, Partition,
State, NodeList, ExitCode, Start, End, User.
"""

import os
import re
import subprocess
import sys

REAL_SACCT = "/usr/bin/sacct"


def conf_value(key):
    path = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    val = None
    try:
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                k, _, v = line.partition("=")
                if k.strip().lower() == key.lower():
                    val = v.strip()
    except OSError:
        pass
    return val


def parse_args(argv):
    opts = {
        "jobs": [],
        "format": "JobID,JobName,Partition,State,ExitCode",
        "sep": None,
        "trailing": False,
        "header": True,
    }
    it = iter(argv)
    for a in it:
        name, eq, val = a.partition("=")
        if name in ("-j", "--jobs"):
            opts["jobs"] += (val if eq else next(it)).split(",")
        elif a.startswith("-j") and len(a) > 2:
            opts["jobs"] += a[2:].split(",")
        elif name in ("-o", "--format"):
            opts["format"] = val if eq else next(it)
        elif a.startswith("-o") and len(a) > 2:
            opts["format"] = a[2:]
        elif a in ("-P", "--parsable2"):
            opts["sep"] = "|"
        elif a in ("-p", "--parsable"):
            opts["sep"], opts["trailing"] = "|", True
        elif a in ("-n", "--noheader"):
            opts["header"] = False
        elif name in ("-S", "--starttime", "-E", "--endtime", "-M", "--clusters", "-u", "--user"):
            if not eq:
                next(it, None)
        elif a in ("-X", "--allocations", "-a", "--allusers", "-L", "--allclusters", "-D", "--duplicates"):
            pass
        else:
            return None  # unsupported option
    return opts


def from_squeue():
    """{job_id_as_sacct_prints_it: record} for every job slurmctld still holds."""
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%F|%A|%j|%P|%T|%N|%S|%e|%u"],
        capture_output=True,
        text=True,
    )
    recs = {}
    if out.returncode != 0:
        return recs, False
    for line in out.stdout.splitlines():
        p = line.split("|")
        if len(p) < 10:
            continue
        recs[p[0]] = {
            "JobID": p[0],
            "Base": p[1],
            "JobIDRaw": p[2],
            "JobName": p[3],
            "Partition": p[4],
            "State": p[5],
            "NodeList": p[6],
            "Start": p[7],
            "End": p[8],
            "User": p[9],
            "ExitCode": "",
        }
    return recs, True


def from_jobcomp():
    loc = conf_value("JobCompLoc")
    recs = {}
    if not loc or not os.path.exists(loc):
        return recs
    with open(loc, errors="replace") as f:
        for line in f:
            kv = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
            if "JobId" not in kv:
                continue
            raw = kv["JobId"]
            arr, task = kv.get("ArrayJobId", ""), kv.get("ArrayTaskId", "")
            if arr and arr not in ("0", "4294967294") and task not in ("", "4294967294"):
                jid, base = f"{arr}_{task}", arr
            else:
                jid, base = raw, raw
            user = kv.get("UserId", "").split("(")[0]
            recs[jid] = {
                "JobID": jid,
                "Base": base,
                "JobIDRaw": raw,
                "JobName": kv.get("Name", ""),
                "Partition": kv.get("Partition", ""),
                "State": kv.get("JobState", ""),
                "NodeList": kv.get("NodeList", ""),
                "Start": kv.get("StartTime", ""),
                "End": kv.get("EndTime", ""),
                "User": user,
                "ExitCode": kv.get("ExitCode", ""),
            }
    return recs


def main():
    acct = (conf_value("AccountingStorageType") or "accounting_storage/none").lower()
    opts = parse_args(sys.argv[1:])
    if acct != "accounting_storage/none" or opts is None:
        os.execv(REAL_SACCT, [REAL_SACCT] + sys.argv[1:])

    recs = from_jobcomp()
    live, _ = from_squeue()
    recs.update(live)  # slurmctld's view wins while it still holds the job

    wanted = [j for j in opts["jobs"] if j]
    rows = []
    for jid, r in recs.items():
        if wanted and not any(w in (jid, r["Base"], r["JobIDRaw"]) for w in wanted):
            continue
        rows.append(r)

    def key(r):
        base, _, task = r["JobID"].partition("_")
        return (int(base) if base.isdigit() else 0, task)

    rows.sort(key=key)
    fields = [f.split("%")[0] for f in opts["format"].split(",") if f]
    canon = {
        k.lower(): k
        for k in ("JobID", "JobIDRaw", "JobName", "Partition", "State", "NodeList", "ExitCode", "Start", "End", "User")
    }
    cols = [canon.get(f.lower(), f) for f in fields]
    lines = []
    if opts["header"]:
        lines.append(cols)
    for r in rows:
        lines.append([r.get(c, "") for c in cols])
    if opts["sep"]:
        tail = opts["sep"] if opts["trailing"] else ""
        for line in lines:
            print(opts["sep"].join(line) + tail)
    else:
        for line in lines:
            print(" ".join(f"{v:>12.12}" for v in line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
