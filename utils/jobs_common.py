#!/usr/bin/env python3
"""Shared logic of the Kaldi-style job interface (utils/run_local.py, utils/run_slurm.py).

Call form, identical for every backend:

    <backend> [options] [JOB=a:b] <log> <command word>...

Every occurrence of the job-range name (``JOB``) in the log path and in the command words is
replaced by the task index; the words are joined with single spaces and run by ``bash -c``, so a
pipe is passed quoted: ``"cat a | sort"``. Each task writes a Kaldi-format log::

    # <command, JOB substituted>
    # Started at <date>
    <backend lines, e.g. "# Slurm job 12_3 on node1">
    <stdout + stderr of the task>
    # Accounting: time=<seconds> threads=<n>
    # Ended (code <rc>) at <date>

Standard library only: this runs before any virtual environment exists, and on compute nodes
(the Slurm batch script calls ``python3 jobs_common.py run-task ...``).
"""
import argparse
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

__all__ = [
    "JobsError", "JobsUsageError", "JobSpec", "parse_call", "parse_time_limit", "substitute",
    "run_task", "read_log_footer", "TaskResult", "Progress",
]

DEFAULT_JOB_NAME = "JOB"
TIMEOUT_CODE = 124  # what coreutils `timeout` returns; written as the code of a task killed for --time
KILL_GRACE_S = 5.0  # SIGTERM -> SIGKILL delay when a task's process group is stopped
_RANGE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?$")
_FOOTER_RE = re.compile(r"^# Ended \(code (-?\d+)\) at ")
_MEM_RE = re.compile(r"^\d+(\.\d+)?[KMGTkmgt]?$")


class JobsError(Exception):
    """A call that cannot be carried out (e.g. a log path that is a directory); nothing runs."""


class JobsUsageError(JobsError, ValueError):
    """Bad call of a backend (option, range, log path): reported with the usage, nothing runs."""


class JobSpec:
    """A parsed backend call.

    options: {name: value}, names with underscores (``--max-jobs-run`` == ``--max_jobs_run``)
    job_name: ``JOB`` (or the name used in ``NAME=a:b``); start..end inclusive task indices
    log_template / command_words: with the job name still in them
    """

    def __init__(self, options, job_name, start, end, log_template, command_words, array):
        self.options = options
        self.job_name = job_name
        self.start = start
        self.end = end
        self.log_template = log_template
        self.command_words = command_words
        self.array = array  # True when the call had a NAME=a:b (or NAME=a) argument

    @property
    def indices(self):
        return range(self.start, self.end + 1)

    @property
    def num_tasks(self):
        return self.end - self.start + 1

    def command_template(self):
        return " ".join(self.command_words)

    def command(self, index):
        return substitute(self.command_template(), self.job_name, index) if self.array else self.command_template()

    def log_path(self, index):
        return substitute(self.log_template, self.job_name, index) if self.array else self.log_template

    def base_name(self):
        """`exp/log/decode.JOB.log` -> `decode`: names the batch script and the Slurm job."""
        base = os.path.basename(self.log_template)
        if base.endswith(".log"):
            base = base[: -len(".log")]
        if self.array:
            base = base.replace("." + self.job_name, "").replace(self.job_name, "")
        base = base.strip(".") or "job"
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", base)


def substitute(text, job_name, index):
    """Every occurrence of ``job_name`` in ``text`` replaced by ``index`` (as Kaldi's run.pl does)."""
    return text.replace(job_name, str(index))


def parse_call(argv, allowed_options=None):
    """Split ``[--opt value | --opt=value]... [NAME=a:b] <log> <command...>`` into a JobSpec.

    allowed_options: set of option names (underscored) accepted; None accepts any ``--name``
    (the Slurm backend checks them against its config). Raises JobsUsageError.
    """
    argv = list(argv)
    options = {}
    while argv and argv[0].startswith("-") and argv[0] != "-":
        word = argv.pop(0)
        if word == "--":
            break
        if not word.startswith("--") or len(word) == 2:
            raise JobsUsageError(f"unknown option '{word}'")
        if "=" in word:
            name, value = word[2:].split("=", 1)
        else:
            name = word[2:]
            if not argv:
                raise JobsUsageError(f"option '{word}' needs a value")
            value = argv.pop(0)
        name = name.replace("-", "_")
        if allowed_options is not None and name not in allowed_options:
            raise JobsUsageError(
                f"unknown option '--{name}' (known: {', '.join('--' + o for o in sorted(allowed_options))})")
        options[name] = value  # a later one wins: cmd.sh's "--mem 4G", then the recipe's "--mem 8G"

    job_name, start, end, array = DEFAULT_JOB_NAME, 1, 1, False
    if argv:
        m = _RANGE_RE.match(argv[0])
        if m:
            argv.pop(0)
            job_name, array = m.group(1), True
            start = int(m.group(2))
            end = int(m.group(3)) if m.group(3) is not None else start
            if end < start:
                raise JobsUsageError(f"empty job range '{m.group(0)}': end {end} < start {start}")
    if len(argv) < 2:
        raise JobsUsageError("expected a log file and a command after the options"
                             + (" and the job range" if array else ""))
    log_template, command_words = argv[0], argv[1:]
    if array and job_name not in log_template and end > start:
        raise JobsUsageError(
            f"{end - start + 1} tasks would share one log file '{log_template}': put {job_name} in its name")
    if _RANGE_RE.match(log_template):
        raise JobsUsageError(f"'{log_template}' looks like a job range but comes after another one")
    _validate_common_options(options)
    return JobSpec(options, job_name, start, end, log_template, command_words, array)


def _positive_int(name, value, minimum=1):
    try:
        n = int(value)
    except ValueError:
        raise JobsUsageError(f"--{name} needs a whole number, got '{value}'") from None
    if n < minimum:
        raise JobsUsageError(f"--{name} must be >= {minimum}, got {n}")
    return n


def _validate_common_options(options):
    if "max_jobs_run" in options:
        _positive_int("max_jobs_run", options["max_jobs_run"])
    if "num_threads" in options:
        _positive_int("num_threads", options["num_threads"])
    if "gpu" in options:
        _positive_int("gpu", options["gpu"], minimum=0)
    if "time" in options:
        parse_time_limit(options["time"])
    if "mem" in options and not _MEM_RE.match(options["mem"]):
        raise JobsUsageError(f"--mem needs a size such as 4G, 500M or 0, got '{options['mem']}'")


def parse_time_limit(text):
    """Slurm's time formats -> seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (M alone = minutes)."""
    t = str(text).strip()
    m = re.match(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$", t)
    if not m:
        raise JobsUsageError(
            f"--time '{text}' is not a Slurm time (minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S)")
    days, a, b, c = m.group(1), m.group(2), m.group(3), m.group(4)
    a = int(a)
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + a * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # M:S
        seconds = a * 60 + int(b)
    else:  # M
        seconds = a * 60
    if seconds <= 0:
        raise JobsUsageError(f"--time '{text}' is not a positive duration")
    return seconds


def _date():
    # the format of `date` in the C locale, which Kaldi's logs carry
    return datetime.datetime.now().astimezone().strftime("%a %b %e %H:%M:%S %Z %Y")


class TaskResult:
    def __init__(self, index, log_path, code, elapsed, note=""):
        self.index = index
        self.log_path = log_path
        self.code = code  # the code written in the footer
        self.elapsed = elapsed
        self.note = note  # "timeout", "interrupted (signal 15)" or ""

    def __repr__(self):
        return f"TaskResult(index={self.index}, code={self.code}, log={self.log_path!r}, note={self.note!r})"


def _stop_group(proc):
    """SIGTERM the task's process group, SIGKILL it after KILL_GRACE_S; returns the exit status."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def run_task(command, log_path, index=None, num_threads=None, time_limit_s=None,
             extra_header=(), stop_event=None, env=None):
    """Run one task: ``bash -c command`` with stdout+stderr appended to a Kaldi-format log.

    num_threads: when given, exported as OMP_NUM_THREADS and MKL_NUM_THREADS (the footer says
    threads=1 when not given, as Kaldi's). time_limit_s: the task's process group is killed when
    exceeded and the footer says code 124. stop_event (threading.Event): when set, the task's
    process group is killed and the footer says code 128+signal. Returns a TaskResult.
    """
    log_dir = os.path.dirname(log_path)
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    task_env = dict(os.environ if env is None else env)
    if num_threads is not None:
        task_env["OMP_NUM_THREADS"] = str(num_threads)
        task_env["MKL_NUM_THREADS"] = str(num_threads)
    with open(log_path, "w", encoding="utf-8") as f:
        f.write(f"# {command}\n# Started at {_date()}\n")
        for line in extra_header:
            f.write(f"# {line}\n")
    t0 = time.monotonic()
    note, code = "", None
    with open(log_path, "ab") as logf:
        try:
            proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, env=task_env, start_new_session=True)
        except OSError as e:  # bash missing, cannot fork
            logf.write(f"{os.path.basename(sys.argv[0])}: cannot start bash: {e}\n".encode())
            code = 127
            proc = None
        while proc is not None:
            try:
                rc = proc.wait(timeout=0.1)
                code = rc if rc >= 0 else 128 - rc
                break
            except subprocess.TimeoutExpired:
                pass
            if time_limit_s is not None and time.monotonic() - t0 > time_limit_s:
                _stop_group(proc)
                note, code = f"killed after the time limit of {time_limit_s:g} s", TIMEOUT_CODE
                logf.write(f"# Killed: time limit of {time_limit_s:g} s exceeded\n".encode())
                break
            if stop_event is not None and stop_event.is_set():
                _stop_group(proc)
                signum = getattr(stop_event, "signum", signal.SIGTERM)
                note, code = f"interrupted (signal {signum})", 128 + signum
                logf.write(f"# Killed: interrupted by signal {signum}\n".encode())
                break
        elapsed = time.monotonic() - t0
        logf.write(f"# Accounting: time={int(round(elapsed))} threads={num_threads or 1}\n"
                   f"# Ended (code {code}) at {_date()}\n".encode())
    return TaskResult(index, log_path, code, elapsed, note)


def read_log_footer(log_path):
    """The code in a task log's ``# Ended (code X) at`` line; None if the log or the line is missing."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        m = _FOOTER_RE.match(line)
        if m:
            return int(m.group(1))
    return None


def format_failures(prog, results, total):
    """``<prog>: k / N failed, log is in <first>`` plus one line listing every failing task."""
    failed = sorted((r for r in results if r.code != 0), key=lambda r: r.index)
    if not failed:
        return ""
    lines = [f"{prog}: {len(failed)} / {total} failed, log is in {failed[0].log_path}"]
    items = []
    for r in failed:
        why = "no footer" if r.code is None else f"code {r.code}"
        if r.note:
            why += f", {r.note}"
        items.append(f"{r.index} ({why})")
    lines.append(f"{prog}: failed tasks: " + ", ".join(items))
    return "\n".join(lines)


class Progress:
    """One stderr line when the counts change, at most every ``interval_s`` seconds (default 60,
    or $UALM_JOBS_PROGRESS_S), so a long array shows it is alive without flooding recipe logs."""

    def __init__(self, prog, what, interval_s=None):
        if interval_s is None:
            text = os.environ.get("UALM_JOBS_PROGRESS_S", "60")
            try:
                interval_s = float(text)
            except ValueError:
                raise JobsError(f"UALM_JOBS_PROGRESS_S must be a number of seconds, got '{text}'") from None
        self.prog, self.what, self.interval_s = prog, what, interval_s
        self._last_time = time.monotonic()
        self._last_text = None

    def update(self, text):
        now = time.monotonic()
        if text != self._last_text and now - self._last_time >= self.interval_s:
            print(f"{self.prog}: {self.what}: {text}", file=sys.stderr, flush=True)
            self._last_time, self._last_text = now, text


def remove_stale_logs(spec):
    """Delete logs left by an earlier run of the same tasks, so an old footer is never trusted."""
    for i in spec.indices:
        try:
            os.remove(spec.log_path(i))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise JobsError(f"cannot remove the old log {spec.log_path(i)} of task {i}: {e.strerror}") from None


# --- `python3 jobs_common.py run-task`: one task of a Slurm array (called by the batch script) ---

def _run_task_main(argv):
    p = argparse.ArgumentParser(prog="jobs_common.py run-task",
                                description="Run one task of a job array with a Kaldi-format log.")
    p.add_argument("--index", type=int, required=True, help="task index (e.g. $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--job_name", default=DEFAULT_JOB_NAME, help="placeholder replaced by the index; empty: replace nothing")
    p.add_argument("--log", required=True, help="log path template (contains the placeholder)")
    p.add_argument("--num_threads", type=int, default=None)
    p.add_argument("--slurm", action="store_true", help="add the Slurm job / GPU lines to the header")
    p.add_argument("command", help="command template (contains the placeholder)")
    args = p.parse_args(argv)
    if args.job_name:
        command = substitute(args.command, args.job_name, args.index)
        log_path = substitute(args.log, args.job_name, args.index)
    else:  # the single-job form: nothing is replaced
        command, log_path = args.command, args.log
    header = []
    if args.slurm:
        job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "?")
        task = os.environ.get("SLURM_ARRAY_TASK_ID", str(args.index))
        header.append(f"Slurm job {job}_{task} on {socket.gethostname()}")
        header.append("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
                      + " SLURM_CPUS_PER_TASK=" + os.environ.get("SLURM_CPUS_PER_TASK", "(unset)"))
    stop = threading.Event()

    def on_signal(signum, _frame):  # Slurm's scancel / time limit: stop the task, still write the footer
        stop.signum = signum
        stop.set()

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(s, on_signal)
    result = run_task(command, log_path, index=args.index, num_threads=args.num_threads,
                      extra_header=header, stop_event=stop)
    return result.code if 0 <= result.code <= 255 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run-task":
        sys.exit(_run_task_main(sys.argv[2:]))
    sys.exit("usage: jobs_common.py run-task --index I --log LOG [--num_threads N] [--slurm] COMMAND\n"
             "(a module of utils/run_local.py and utils/run_slurm.py; see their --help)")
