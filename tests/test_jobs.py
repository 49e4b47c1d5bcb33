"""Several processes at a time (``algd.launch.jobs``, ``make reproduce JOBS=2``): scheduling, output, signals."""

import signal
import subprocess
import sys
import textwrap

from conftest import ROOT, wait_until

from algd.launch.jobs import Job, makespan, run_parallel, threads_per_job

# A child that logs when it starts and ends, draws a progress bar in place (\r) as tqdm does, prints a line and exits
# with a code.
CHILD = textwrap.dedent(
    """
    import sys, time
    name, stamps, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
    open(stamps, "a").write(f"start {name} {time.time()}\\n")
    for i in range(3):
        sys.stderr.write(f"\\rtrain: {i}/3 frames"); sys.stderr.flush(); time.sleep(0.3)
    sys.stderr.write("\\n"); sys.stderr.flush()  # (tqdm's close ends the bar's line)
    print(f"done {name}", flush=True)
    open(stamps, "a").write(f"end {name} {time.time()}\\n")
    sys.exit(code)
    """
)


def test_threads_and_makespan():
    assert threads_per_job(2, cores=2) == 1 and threads_per_job(2, cores=16) == 8 and threads_per_job(4, cores=2) == 1
    assert makespan([3.0, 1.0, 1.0], 1) == 5.0
    assert makespan([3.0, 1.0, 1.0], 2) == 3.0  # the two short ones share the second slot
    assert makespan([1.0, 1.0, 3.0], 2) == 4.0  # in this order the long one starts last
    assert makespan([], 2) == 0.0


def test_jobs_run_at_once_with_prefixed_lines_logs_and_return_codes(tmp_path, capsys):
    stamps = tmp_path / "stamps"
    jobs = [
        Job(name, [sys.executable, "-c", CHILD, name, str(stamps), str(code)], tmp_path / f"{name}.log")
        for name, code in [("a", 0), ("b", 3), ("c", 0)]
    ]
    started, ended = [], []
    assert run_parallel(jobs, 2, progress_every=0.0, on_start=lambda j: started.append(j.name), on_end=ended.append)
    assert [j.returncode for j in jobs] == [0, 3, 0] and started == ["a", "b", "c"]
    assert sorted(j.name for j in ended) == ["a", "b", "c"]
    events = [line.split() for line in stamps.read_text().splitlines()]
    when = {(kind, name): float(t) for kind, name, t in events}
    assert when[("start", "b")] < when[("end", "a")] and when[("start", "a")] < when[("end", "b")]  # a and b at once
    assert when[("start", "c")] >= min(when[("end", "a")], when[("end", "b")])  # c waits for a free slot
    out = capsys.readouterr().out
    assert "[a] done a" in out and "[b] done b" in out and "[c] done c" in out
    assert "[a] train: " in out  # the progress bar's latest state, printed every progress_every
    log = (tmp_path / "a.log").read_bytes()
    assert b"\rtrain: 2/3 frames" in log and b"done a\n" in log  # the whole output, as the child wrote it


def test_on_end_can_stop_further_jobs(tmp_path):
    stamps = tmp_path / "stamps"
    jobs = [Job(n, [sys.executable, "-c", CHILD, n, str(stamps), "1"], tmp_path / f"{n}.log") for n in "abc"]
    assert not run_parallel(jobs, 1, on_end=lambda job: job.returncode == 0)
    assert [j.returncode for j in jobs] == [1, None, None]


def test_a_signal_reaches_every_running_job_and_starts_no_other(tmp_path):
    """SIGTERM to the parent: each running child gets it (a training run saves its checkpoint on it), the queued one
    never starts, and run_parallel returns False."""
    child = textwrap.dedent(
        """
        import signal, sys, time
        out = sys.argv[1]
        signal.signal(signal.SIGTERM, lambda *a: (open(out, "w").write("got SIGTERM"), sys.exit(4)))
        open(out + ".started", "w").close()
        time.sleep(60)
        """
    )
    parent = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from algd.launch.jobs import Job, run_parallel
        tmp = Path({str(tmp_path)!r})
        jobs = [Job(n, [sys.executable, "-c", {child!r}, str(tmp / n)], tmp / f"{{n}}.log") for n in "abc"]
        ok = run_parallel(jobs, 2)
        print("returned", ok, [j.returncode for j in jobs], flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: all((tmp_path / f"{n}.started").exists() for n in "ab"), proc, 60, "the jobs' start")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "returned False [4, 4, None]" in out, out
    assert (tmp_path / "a").read_text() == "got SIGTERM" == (tmp_path / "b").read_text()
    assert not (tmp_path / "c.started").exists()
