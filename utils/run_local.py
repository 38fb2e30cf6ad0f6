#!/usr/bin/env python3
"""Local backend of the Kaldi-style job interface: runs the tasks on this machine.

Usage: utils/run_local.py [options] [JOB=a:b] <log> <command ...>
  e.g. utils/run_local.py --max_jobs_run 2 JOB=1:4 exp/log/x.JOB.log "echo JOB | sort > out.JOB"
       utils/run_local.py exp/log/one.log python -m ualm_tk.bin.x --foo 1     (single job)

Every JOB in the log path and the command words becomes the task index; the words are joined
with spaces and run by `bash -c` (quote pipes and redirections). Each task's log: `# <command>`,
`# Started at <date>`, its stdout+stderr, `# Accounting: time=<s> threads=<n>`,
`# Ended (code <rc>) at <date>`.

Options (also written --max-jobs-run etc. and --name=value; a later one overrides an earlier one):
  --max_jobs_run N   at most N tasks at once (default: the number of CPUs)
  --num_threads N    export OMP_NUM_THREADS=N and MKL_NUM_THREADS=N to each task
  --gpu N            recorded in the log (the local machine's GPUs are all visible; warns if N>0
                     and there is no nvidia-smi)
  --mem SIZE         accepted (for the Slurm backend), not enforced
  --time T           kill a task running longer than T (Slurm format: minutes, M:S, H:M:S,
                     D-H[:M[:S]]); its footer says code 124
  --config FILE      accepted and ignored, so cmd.sh can swap backends

Exit status 0 when every task ended with code 0; otherwise 1 and
`run_local.py: <k> / <N> failed, log is in <first failing log>` on stderr. SIGINT/SIGTERM kill
the running tasks' process groups (their logs get a footer) and exit 128+signal. While tasks
run, a progress line goes to stderr when the counts change, at most every $UALM_JOBS_PROGRESS_S
seconds (default 60).
"""
import os
import shutil
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import jobs_common as jc  # noqa: E402

PROG = "run_local.py"
OPTIONS = {"max_jobs_run", "num_threads", "gpu", "mem", "time", "config"}


def usage():
    return __doc__.split("\n\n", 1)[1].rstrip()


def run(spec):
    """Run every task of spec; returns the process exit status."""
    opts = spec.options
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    max_jobs = int(opts.get("max_jobs_run", cpus))
    num_threads = int(opts["num_threads"]) if "num_threads" in opts else None
    time_limit = jc.parse_time_limit(opts["time"]) if "time" in opts else None
    header = []
    if "gpu" in opts:
        gpus = int(opts["gpu"])
        if gpus > 0 and shutil.which("nvidia-smi") is None:
            print(f"{PROG}: warning: --gpu {gpus} but nvidia-smi is not on PATH: the tasks may see no GPU",
                  file=sys.stderr)
        header.append(f"gpu={gpus} requested (local backend: CUDA_VISIBLE_DEVICES="
                      f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')})")
    jc.remove_stale_logs(spec)

    progress = jc.Progress(PROG, f"{spec.num_tasks} task(s) of {spec.log_template}")
    pending = list(spec.indices)
    results = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                index = pending.pop(0)
            try:
                r = jc.run_task(spec.command(index), spec.log_path(index), index=index,
                                num_threads=num_threads, time_limit_s=time_limit,
                                extra_header=header, stop_event=stop)
            except OSError as e:  # the log cannot be written: the task did not run
                r = jc.TaskResult(index, spec.log_path(index), None, 0.0, f"cannot write its log: {e}")
            with lock:
                results.append(r)

    def on_signal(signum, _frame):
        stop.signum = signum
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(max_jobs, spec.num_tasks))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)  # short joins so the signal handler runs promptly
                with lock:
                    done, failed = len(results), sum(r.code != 0 for r in results)
                progress.update(f"{done} done ({failed} failed), {spec.num_tasks - done - len(pending)} running, "
                                f"{len(pending)} waiting")
    finally:
        for s, h in old.items():
            signal.signal(s, h)

    if stop.is_set():
        signum = getattr(stop, "signum", signal.SIGTERM)
        killed = [r.index for r in results if r.note.startswith("interrupted")]
        print(f"{PROG}: interrupted by signal {signum}: killed running task(s) {killed or 'none'}, "
              f"{len(pending)} not started; logs: {spec.log_template}", file=sys.stderr)
        return 128 + signum
    message = jc.format_failures(PROG, results, spec.num_tasks)
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    try:
        spec = jc.parse_call(argv, allowed_options=OPTIONS)
    except jc.JobsUsageError as e:
        print(usage(), file=sys.stderr)
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    try:
        return run(spec)
    except jc.JobsError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
