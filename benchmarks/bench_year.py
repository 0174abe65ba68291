"""`make bench`, third step: a year of sessions replayed whole-process against NautilusTrader.

    .venv/bin/python benchmarks/bench_year.py [--runs 1] [--days 252] [--full-size] [--cache DIR]

1. Flat files of the 252 trading sessions of 2024 (early closes 2024-07-03, 11-29 and 12-24
   included), written once by `alphagen sample` into --cache (default data/bench/, gitignored)
   and reused while a regenerated check day is byte-identical to the cached one.
2. In one run, --runs times and one after the other: the peer, NautilusTrader 1.231 running
   the same strategy on the same files (`../shared/bench/peer_nautilus.py`, in the venv its
   README describes, created here if missing), then `alphagen replay` of the same days, each
   as a whole process. Ours starts from a fresh Dagster instance, DuckDB file and flat-file
   cache (so it reads the same .csv.gz files as the peer). Wall-clock seconds and peak memory:
   the largest process' peak RSS (`/usr/bin/time -v`) and the process tree's summed PSS
   (sampled every 0.5 s; ours has dbt processes and chart workers). Medians of --runs; ratio
   ours / peer.
3. The same for the first 20 of those days (is the peak independent of the range?).
4. The Dagster event log (SQLite, under DAGSTER_HOME/history) that one 20-day replay adds,
   after a first replay in the same instance: rows, bytes (after a WAL checkpoint), and rows
   by event type (asset checks planned vs evaluated).
Where our year run's time goes is read from its own Dagster log lines (stderr).
Everything but the flat-file cache is written to a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from benchmarks.run import replay_env  # noqa: E402

PEER_SCRIPT = ROOT.parent / "shared" / "bench" / "peer_nautilus.py"
PEER_VENV = Path(os.environ.get("PEER_VENV") or Path(os.environ.get("TMPDIR") or "/tmp") / "nautvenv")
PEER_PACKAGES = ["nautilus_trader==1.231.0", "polars", "numpy"]
YEAR = (dt.date(2024, 1, 2), dt.date(2024, 12, 31))
SHORT = 20


# ---- inputs ---------------------------------------------------------------------------------

def _digest(folder: Path, day: dt.date) -> str:
    from alphagen_core.adapters.polygon.flatfiles import options_key, stocks_key

    h = hashlib.sha256()
    for key in (stocks_key(day), options_key(day)):
        h.update((folder / key).read_bytes())
    return h.hexdigest()


def _sample(start: dt.date, end: dt.date, out: Path, full_size: bool) -> None:
    cmd = [str(BIN / "alphagen"), "sample", "--start", str(start), "--end", str(end), "--out", str(out)]
    subprocess.run(cmd + (["--full-size"] if full_size else []), check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def flat_files(cache: Path, days: list[dt.date], full_size: bool) -> None:
    """Generate the days missing from `cache`; regenerate all if the generator's output changed
    (checked on the first day and the first early close: regenerated and compared bytes)."""
    from alphagen_core.adapters.polygon.flatfiles import options_key, stocks_key
    from alphagen_core.domain.calendar import session

    def missing() -> list[dt.date]:
        return [d for d in days if not ((cache / stocks_key(d)).exists() and (cache / options_key(d)).exists())]

    checks = [days[0]] + [d for d in days if session(d).early_close][:1]
    present = [d for d in checks if d not in missing()]
    if present:
        with tempfile.TemporaryDirectory(prefix="bench-year-check-") as tmp:
            for d in present:
                _sample(d, d, Path(tmp), full_size)
            if any(_digest(Path(tmp), d) != _digest(cache, d) for d in present):
                print(f"the generator's output changed: regenerating {cache}", file=sys.stderr)
                shutil.rmtree(cache)
    todo = missing()
    if todo:
        print(f"generating {len(todo)} days into {cache} ...", file=sys.stderr)
        t = time.perf_counter()
        _sample(todo[0], todo[-1], cache, full_size)
        print(f"  {time.perf_counter() - t:.0f} s", file=sys.stderr)
    assert not missing(), f"flat files missing in {cache}: {missing()[:5]}"


def peer_python(venv: Path) -> Path:
    """The peer's venv as /work/shared/bench/README.md makes it (pyenv's Python 3.12.1)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import nautilus_trader, polars, numpy; assert nautilus_trader.__version__ == '1.231.0'"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() or str(Path.home() / ".pyenv")
    print(f"installing the peer's venv {venv} (NautilusTrader 1.231, from PyPI) ...", file=sys.stderr)
    subprocess.run([f"{root}/versions/3.12.1/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PEER_PACKAGES], check=True)
    subprocess.run(probe, check=True)
    return python


# ---- one measured process -------------------------------------------------------------------

def measure(cmd: list[str], *, env: dict[str, str] | None, out: Path, err: Path) -> dict:
    """Run `cmd` as a whole process: wall-clock seconds, the largest process' peak RSS
    (`/usr/bin/time -v`) and the peak of the process tree's summed PSS (sampled every 0.5 s)."""
    timed = Path("/usr/bin/time").exists()
    rusage = out.with_suffix(".time")
    full = ["/usr/bin/time", "-v", "-o", str(rusage), *cmd] if timed else cmd
    tree_peak = 0
    series: list[tuple[float, int]] = []  # (seconds since launch, largest process' RSS)
    done = threading.Event()

    def sample(pid: int) -> None:
        nonlocal tree_peak
        while not done.wait(0.5):
            try:
                procs = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            total = largest = 0
            for p in procs:
                try:
                    m = p.memory_full_info()
                except psutil.Error:
                    continue
                total += m.pss  # shared pages split between the processes
                largest = max(largest, m.rss)
            tree_peak = max(tree_peak, total)
            series.append((time.perf_counter() - t, largest))

    with open(out, "w") as o, open(err, "w") as e:
        started_at, t = time.time(), time.perf_counter()
        proc = subprocess.Popen(full, env=env, cwd=ROOT, stdout=o, stderr=e)
        sampler = threading.Thread(target=sample, args=(proc.pid,), daemon=True)
        sampler.start()
        if timed:
            rc = proc.wait()
            text = rusage.read_text()
            peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
        else:  # this child's own rusage (inflated by this process' size over fork/exec)
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = rc = os.waitstatus_to_exitcode(status)
            peak_kb = ru.ru_maxrss
        seconds = time.perf_counter() - t
        done.set()
        sampler.join()
    return {"started_at": started_at, "seconds": seconds, "peak_mb": peak_kb / 1024, "tree_mb": tree_peak / 2**20,
            "series": series, "rc": rc, "out": out, "err": err}


def rss_over_time(r: dict) -> str:
    """The largest process' RSS sampled nearest each tenth of the run's wall time (MiB)."""
    series = r["series"]
    if not series:
        return ""
    marks = [min(series, key=lambda s: abs(s[0] - r["seconds"] * tenth / 10))[1] for tenth in range(1, 11)]
    return ", ".join(f"{m / 2**20:.0f}" for m in marks)


def run_peer(python: Path, folder: Path, days: list[dt.date], tmp: Path, tag: str) -> dict:
    r = measure([str(python), str(PEER_SCRIPT), str(folder), ",".join(map(str, days))], env=None,
                out=tmp / f"{tag}.out", err=tmp / f"{tag}.err")
    lines = [ln for ln in r["out"].read_text().splitlines() if ln.startswith("nautilus: ")]
    per_day = {ln.split()[1]: dict(kv.split("=") for kv in ln.split()[2:]) for ln in lines[:-1]}
    r["days_ok"] = len(per_day) == len(days) if len(days) > 1 else bool(lines)
    r["summary"] = dict(kv.split("=") for kv in lines[-1].split()[2:]) if lines else {}
    r["per_day"] = per_day
    return r


def run_ours(folder: Path, days: list[dt.date], tmp: Path, tag: str) -> dict:
    """`alphagen replay` of `days` from a fresh Dagster instance, DuckDB file and flat-file cache."""
    work = tmp / tag
    env = replay_env(work / "dagster_home", work / "replay.duckdb", work / "cache", work / "charts")
    r = measure([str(BIN / "alphagen"), "replay", "--start", str(days[0]), "--end", str(days[-1]), "--source", str(folder)],
                env=env, out=tmp / f"{tag}.out", err=tmp / f"{tag}.err")
    r["home"] = work / "dagster_home"
    r["days_ok"] = r["rc"] == 0 and len(_progress(r["err"].read_text())) == len(days)
    return r


def _cleanup_ours(r: dict) -> None:
    """Keep the log and stderr (copied next to the other outputs); drop the instance and data."""
    for log in (r["home"] / "logs").glob("replay-*.log"):
        shutil.copy(log, r["out"].with_suffix(".log"))
    shutil.rmtree(r["home"].parent, ignore_errors=True)


# ---- where our time goes --------------------------------------------------------------------

_PROGRESS = re.compile(r"\[(\d+)/(\d+)\] (\d{4}-\d\d-\d\d) \(([\d.]+)s.*?: (\d+) bars")


def _progress(stderr: str) -> list[tuple[str, float, int]]:
    """(day, seconds, bars) of each progress line."""
    return [(m.group(3), float(m.group(4)), int(m.group(5))) for m in _PROGRESS.finditer(stderr)]


def phases(r: dict) -> list[tuple[str, float]]:
    """Seconds between landmarks of our run: its launch, the timestamps of its events in the
    run's event-log shard (Dagster's schema: UTC `timestamp`, `dagster_event_type`, `step_key`),
    and its exit."""
    shards = [p for p in (r["home"] / "history" / "runs").glob("*.db") if p.name != "index.db"]
    if len(shards) != 1:
        return []
    con = sqlite3.connect(shards[0])
    try:
        events = con.execute("SELECT timestamp, dagster_event_type, step_key, event FROM event_logs ORDER BY id").fetchall()
    finally:
        con.close()
    stamp = [(dt.datetime.fromisoformat(t).replace(tzinfo=dt.timezone.utc).timestamp(), kind, step, body)
             for t, kind, step, body in events]

    def at(test, last: bool = False) -> float | None:
        hits = [t for t, kind, step, body in stamp if test(kind, step, body)]
        return (hits[-1] if last else hits[0]) if hits else None

    def step(kind: str, key: str):
        return lambda k, s, _b: k == kind and s == key

    def day_line(k, _s, body):
        return k is None and "[1/" in body

    marks = [
        ("launch -> first event (process start, imports, instance, run creation)", r["started_at"], stamp[0][0]),
        ("-> replay step starts (planned events, run start)", stamp[0][0], at(step("STEP_START", "replay_tables"))),
        ("-> first day replayed", at(step("STEP_START", "replay_tables")), at(day_line)),
        ("-> last day replayed", at(day_line), at(lambda k, _s, b: k is None and _PROGRESS.search(b or ""), last=True)),
        ("-> replay step ends (its materializations and checks)",
         at(lambda k, _s, b: k is None and _PROGRESS.search(b or ""), last=True), at(step("STEP_SUCCESS", "replay_tables"))),
        ("-> dbt step ends (dbt build, its events)", at(step("STEP_SUCCESS", "replay_tables")),
         at(lambda k, s, _b: k == "STEP_SUCCESS" and s and s.startswith("dbt"))),
        ("-> last event", at(lambda k, s, _b: k == "STEP_SUCCESS" and s and s.startswith("dbt")), stamp[-1][0]),
        ("-> process exit", stamp[-1][0], r["started_at"] + r["seconds"]),
    ]
    counts: dict[str, int] = {}
    for _t, kind, _s, _b in stamp:
        counts[kind or "log message"] = counts.get(kind or "log message", 0) + 1
    r["run_events"] = counts
    return [(name, b - a) for name, a, b in marks if a is not None and b is not None]


# ---- the event log of a 20-day replay -------------------------------------------------------

def _shard(name: str) -> str:
    """`history/`'s files by role: Dagster's SQLite layout."""
    name = name.removesuffix("-wal").removesuffix("-shm")
    if name == "runs/index.db":
        return "index shard"
    if name.startswith("runs/") and name.endswith(".db"):
        return "run shards"
    return "run storage (runs.db)" if name == "runs.db" else "other"


def _event_log(history: Path) -> dict:
    """Rows of the `event_logs` tables under `history`, by shard and by event type, and the bytes
    of its files by shard, after checkpointing each SQLite file's WAL into the file itself."""
    rows: dict[tuple[str, str], int] = {}
    for db in sorted(history.rglob("*.db")):
        con = sqlite3.connect(db)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_logs'").fetchone():
                for kind, n in con.execute("SELECT dagster_event_type, count(*) FROM event_logs GROUP BY 1"):
                    key = (_shard(str(db.relative_to(history))), kind or "log message")
                    rows[key] = rows.get(key, 0) + n
        finally:
            con.close()
    sizes: dict[str, int] = {}
    for p in history.rglob("*"):
        if p.is_file():
            sizes[_shard(str(p.relative_to(history)))] = sizes.get(_shard(str(p.relative_to(history))), 0) + p.stat().st_size
    return {"rows": rows, "sizes": sizes}


def event_log_growth(folder: Path, days: list[dt.date], tmp: Path) -> dict:
    """What one replay of `days` adds to the Dagster instance's SQLite storage, after a first
    replay in the same instance (schema creation excluded); each from an empty DuckDB file."""
    work = tmp / "eventlog"
    home = work / "dagster_home"
    cmd = [str(BIN / "alphagen"), "replay", "--start", str(days[0]), "--end", str(days[-1]), "--source", str(folder)]
    counts = []
    for i in range(2):
        for stale in work.glob("replay.duckdb*"):
            stale.unlink()
        env = replay_env(home, work / "replay.duckdb", work / "cache", work / f"charts{i}")
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            return {"error": f"exit {done.returncode}:\n{done.stdout}{done.stderr[-3000:]}"}
        counts.append(_event_log(home / "history"))
    before, after = counts
    shutil.rmtree(work, ignore_errors=True)

    def added(field: str) -> dict:
        return {k: v - before[field].get(k, 0) for k, v in after[field].items() if v != before[field].get(k, 0)}

    rows = added("rows")
    by_shard: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for (shard, kind), n in rows.items():
        by_shard[shard] = by_shard.get(shard, 0) + n
        by_type[kind] = by_type.get(kind, 0) + n
    sizes = added("sizes")
    return {"rows": sum(rows.values()), "rows_by_shard": by_shard, "by_type": by_type,
            "bytes": sum(sizes.values()), "bytes_by_file": sizes}


# ---- main -----------------------------------------------------------------------------------

def _med(rs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rs)


def _runs(rs: list[dict], key: str = "seconds") -> str:
    return ", ".join(f"{r[key]:.1f}" for r in rs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="pairs (peer, ours) per range; medians are reported")
    parser.add_argument("--days", type=int, default=0, help="only the first N sessions of 2024 (default: all 252)")
    parser.add_argument("--full-size", action="store_true", help="options files padded to 2M+ rows a day (~22 MB each)")
    parser.add_argument("--cache", type=Path, default=None, help="flat-file folder (default data/bench/flatfiles-2024[-full])")
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV)
    parser.add_argument("--keep", type=Path, default=None, help="copy the runs' outputs and logs here")
    args = parser.parse_args()

    from alphagen_core.domain.calendar import session, trading_days

    days = trading_days(*YEAR)
    assert len(days) == 252, len(days)
    early = [d for d in days if session(d).early_close]
    assert early == [dt.date(2024, 7, 3), dt.date(2024, 11, 29), dt.date(2024, 12, 24)], early
    days = days[: args.days] if args.days else days
    cache = (args.cache or ROOT / "data" / "bench" / f"flatfiles-2024{'-full' if args.full_size else ''}").resolve()
    flat_files(cache, days, args.full_size)
    python = peer_python(args.peer_venv)

    tmp = Path(tempfile.mkdtemp(prefix="alphagen-bench-year-"))
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        for span in (days, days[:SHORT]) if len(days) > SHORT else (days,):
            label = f"{len(span)} days"
            results[label] = {"peer": [], "ours": []}
            for i in range(args.runs):
                print(f"{label}, run {i + 1}/{args.runs}: NautilusTrader ...", file=sys.stderr)
                results[label]["peer"].append(run_peer(python, cache, span, tmp, f"peer-{len(span)}-{i}"))
                print(f"{label}, run {i + 1}/{args.runs}: alphagen replay ...", file=sys.stderr)
                r = run_ours(cache, span, tmp, f"ours-{len(span)}-{i}")
                if len(span) == len(days) and i == 0:
                    r["phases"] = phases(r)
                    r["progress"] = _progress(r["err"].read_text())
                _cleanup_ours(r)
                results[label]["ours"].append(r)
        print("event log of a 20-day replay ...", file=sys.stderr)
        growth = event_log_growth(cache, days[:SHORT], tmp)
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
        report(args, days, cache, results, growth)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(args, days, cache, results, growth) -> None:
    size = "full-size (options padded to 2M+ rows a day)" if args.full_size else "normal-size (QQQ, QQQM, SPY, IWM chains; ~80k option rows a day)"
    mb = sum(p.stat().st_size for p in cache.rglob("*.csv.gz")) / 1e6
    cmd = "`.venv/bin/python benchmarks/bench_year.py" + "".join(
        f" {o}" for o, on in ((f"--runs {args.runs}", True), (f"--days {args.days}", bool(args.days)),
                              ("--full-size", args.full_size)) if on) + "`"
    print(f"\n{cmd} ({dt.date.today()}, {os.cpu_count()} cores; medians of {args.runs} run(s) each)\n")
    print(f"Flat files: {days[0]} .. {days[-1]}, {len(days)} sessions, {size}, {mb:.0f} MB of .csv.gz in {cache}\n")
    print("| range | NautilusTrader 1.231 (peer) | `alphagen replay` (ours) | ours / peer | peak peer: largest RSS / tree PSS | peak ours: largest RSS / tree PSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, rs in results.items():
        peer, ours = rs["peer"], rs["ours"]
        ok = all(r["rc"] == 0 and r["days_ok"] for r in peer + ours)
        print(f"| {label} | {_med(peer, 'seconds'):.1f} s ({_runs(peer)}) | {_med(ours, 'seconds'):.1f} s ({_runs(ours)}) | "
              f"**{_med(ours, 'seconds') / _med(peer, 'seconds'):.2f}** | {max(r['peak_mb'] for r in peer):.0f} / "
              f"{max(r['tree_mb'] for r in peer):.0f} MiB | {max(r['peak_mb'] for r in ours):.0f} / "
              f"{max(r['tree_mb'] for r in ours):.0f} MiB |" + ("" if ok else " **a run failed, see below**"))
    for label, rs in results.items():
        for side in ("peer", "ours"):
            for r in rs[side]:
                if r["rc"] != 0 or not r["days_ok"]:
                    print(f"\n{side}, {label}: exit {r['rc']}, all days reported: {r['days_ok']}; stderr ends with:\n```")
                    print("\n".join(r["err"].read_text().splitlines()[-25:]) + "\n```")
    year = next(iter(results.values()))
    s = year["peer"][0]["summary"]
    if s:
        print(f"\nPeer, first run (its own phase sums): import {float(s['import_s']):.1f} s, read {float(s['read_s']):.1f} s, "
              f"build {float(s['build_s']):.1f} s, engine.run {float(s['run_s']):.1f} s, all days {float(s['total_s']):.1f} s; "
              f"{s['bars']} QQQ bars, {s['option_bars']} option bars, {s['orders']} orders")
    ours = year["ours"][0]
    prog = ours.get("progress") or []
    from alphagen_core.domain.calendar import session

    early = [d for d in days if session(d).early_close]
    if early:
        bars = {d: b for d, _, b in prog}
        print("\nEarly closes, QQQ bars replayed (peer / ours): " + ", ".join(
            f"{d} {year['peer'][0]['per_day'].get(str(d), {}).get('bars', '?')} / {bars.get(str(d), '?')}" for d in early))
    if ours.get("phases"):
        print(f"\nOurs, first run of {len(days)} days: where the {ours['seconds']:.1f} s went "
              "(launch and exit against the timestamps of the run's events)\n")
        print("| phase | seconds |\n|---|---:|")
        for name, sec in ours["phases"]:
            print(f"| {name} | {sec:.1f} |")
        print(f"\nThe largest process' RSS at each tenth of the run (MiB): {rss_over_time(ours)}")
        print("\nThe run's events: " + ", ".join(f"{k} {v}" for k, v in sorted(ours["run_events"].items(), key=lambda kv: -kv[1])))
    if prog:
        secs = [p[1] for p in prog]
        n = max(1, min(SHORT, len(secs) // 2))
        print(f"\nPer day (progress lines): median {statistics.median(secs):.3f} s, max {max(secs):.2f} s, sum {sum(secs):.1f} s; "
              f"first {n} days median {statistics.median(secs[:n]):.3f} s, last {n} {statistics.median(secs[-n:]):.3f} s")
    if "error" in growth:
        print(f"\nEvent log of a {SHORT}-day replay: `alphagen replay` failed, {growth['error']}")
        return
    print(f"\nEvent log added by one {SHORT}-day replay (after a first one in the same instance): "
          f"{growth['rows']:,} rows ({', '.join(f'{k} {v:,}' for k, v in growth['rows_by_shard'].items())}), "
          f"{growth['bytes'] / 1e6:.2f} MB ({', '.join(f'{k} {v / 1e6:+.2f} MB' for k, v in growth['bytes_by_file'].items())})")
    planned = growth["by_type"].get("ASSET_CHECK_EVALUATION_PLANNED", 0)
    evaluated = growth["by_type"].get("ASSET_CHECK_EVALUATION", 0)
    print(f"asset checks: {planned} ASSET_CHECK_EVALUATION_PLANNED rows, {evaluated} ASSET_CHECK_EVALUATION rows")
    print("rows by type: " + ", ".join(f"{t} {n}" for t, n in sorted(growth["by_type"].items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
