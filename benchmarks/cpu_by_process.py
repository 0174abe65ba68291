"""Where a command's CPU goes, by kind of process: runs the command, samples /proc four times
a second for every process descended from it, and prints each kind's CPU-seconds and count.

    .venv/bin/python benchmarks/cpu_by_process.py -- .venv/bin/python -m pytest -n 3 ...

`time` counts only the children a process waited for; the run workers a code server spawns,
the processes a test SIGKILLs and the servers a daemon replaces are not all among them. A
process's last quarter second is not seen, so short processes are undercounted a little.
Linux only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float, str] | None:
    """(parent pid, CPU seconds, start time) of a process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS, fields[19]


def kind(cmdline: list[str]) -> str:
    """A short name for what a process is: the script or module and its first argument."""
    args = [a for a in cmdline if a not in ("-u", "-B", "-I")]
    if not args:
        return "?"
    if Path(args[0]).name.startswith("python") and len(args) > 1:
        args = args[1:]
        if args[0] == "-m" and len(args) > 1:
            args = args[1:]
        elif args[0] == "-c":
            return "python -c " + args[1][:40].replace("\n", " ")
    first = Path(args[0]).name
    rest = [a for a in args[1:3] if not a.startswith(("/", "-"))]
    return " ".join([first, *rest])


def sample(root: int, seen: dict[tuple[int, str], dict]) -> None:
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p))}
    for pid, (_, cpu, started) in stats.items():
        key = (pid, started)
        if key not in seen:
            ancestor, hops = pid, 0
            while ancestor != root and ancestor in stats and hops < 64:
                ancestor, hops = stats[ancestor][0], hops + 1
            if ancestor != root:
                continue
        try:  # read each time: a process may exec another program (bash -c's last command)
            cmdline = [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
        except OSError:
            cmdline = []
        if cmdline:
            seen[key] = {"kind": kind(cmdline), "cpu": cpu}
        elif key in seen:  # exited, not yet reaped: its CPU so far
            seen[key]["cpu"] = cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command: give it after --")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(command)
    except OSError as exc:
        parser.error(f"cannot start {command[0]}: {exc.strerror}")
    seen: dict[tuple[int, str], dict] = {}
    try:
        while proc.poll() is None:
            sample(proc.pid, seen)
            time.sleep(0.25)
    except KeyboardInterrupt:  # the command got the Ctrl-C too: report what it used until then
        proc.wait()
    wall = time.monotonic() - started
    by_kind: dict[str, list[float]] = defaultdict(list)
    for process in seen.values():
        by_kind[process["kind"]].append(process["cpu"])
    total = sum(sum(v) for v in by_kind.values())
    print(f"\nexit {proc.returncode}; wall {wall:.0f} s; CPU {total:.0f} s ({total / wall:.2f} cores)")
    print(f"{'CPU s':>8} {'share':>6} {'procs':>6}  kind")
    for name, cpus in sorted(by_kind.items(), key=lambda kv: -sum(kv[1]))[:args.top]:
        print(f"{sum(cpus):8.1f} {sum(cpus) / max(total, 1e-9):6.1%} {len(cpus):6d}  {name}")
    raise SystemExit(proc.returncode)


if __name__ == "__main__":
    main()
