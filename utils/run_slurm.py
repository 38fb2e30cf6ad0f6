#!/usr/bin/env python3
"""Slurm backend of the Kaldi-style job interface: one `sbatch --array` per call, waits for it.

Usage: utils/run_slurm.py [options] [JOB=a:b] <log> <command ...>
  e.g. utils/run_slurm.py --config conf/slurm.conf --gpu 1 JOB=1:8 exp/log/decode.JOB.log \\
           python -m ualm_tk.bin.x --part JOB

Every JOB in the log path and the command words becomes the task index; the words are joined
with spaces and run by `bash -c` in the submit directory (after `. ./path.sh` when it exists).

Options (also written --max-jobs-run etc. and --name=value; a later one overrides an earlier one):
  --config FILE      slurm.conf rules (default: conf/slurm.conf relative to the current directory)
  --max_jobs_run N   at most N tasks of the array at once (--array=a-b%N)
  --num_threads N, --gpu N, --mem SIZE, --time T, --name NAME, and any option NAME that the config
                     has an `option NAME=...` rule for: translated to sbatch flags by the config.
                     --num_threads also exports OMP_NUM_THREADS/MKL_NUM_THREADS to each task.
                     The job name defaults to the log's base name (x for log/x.JOB.log).

Config format (Kaldi/ESPnet slurm.conf), one rule a line, `#` starts a comment:
  command sbatch --export=PATH       the submit command and its fixed flags
  option mem=* --mem-per-cpu $0      --mem V adds `--mem-per-cpu V` ($0 = the value)
  option mem=0                       --mem 0 adds nothing (an exact value beats the `*` rule)
  default gpu=0                      used when --gpu is not given
An option given without a matching rule is an error that names the config file.

The batch script is <logdir>/q/<name>.sh, Slurm's own output <logdir>/q/<name>_<task>.out. Each
task's log: `# <command>`, `# Started at <date>`, `# Slurm job <id>_<task> on <host>`,
`# CUDA_VISIBLE_DEVICES=... SLURM_CPUS_PER_TASK=...`, the task's stdout+stderr,
`# Accounting: time=<s> threads=<n>`, `# Ended (code <rc>) at <date>`. A task succeeded only if its
log ends with code 0; a log without that footer (task never ran or was killed) is a failure,
explained from `scontrol -o show job` and the q/*.out file. Exit status 0 only when every task
succeeded, else 1 and `run_slurm.py: <k> / <N> failed, log is in <first failing log>` on stderr.
SIGINT/SIGTERM cancel the job (scancel) and exit 128+signal. While the job runs, a progress line
goes to stderr when the counts change, at most every $UALM_JOBS_PROGRESS_S seconds (default 60).
"""
import datetime
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import jobs_common as jc  # noqa: E402

PROG = "run_slurm.py"
NATIVE_OPTIONS = {"config", "max_jobs_run"}  # handled here, never looked up in the config
POLL_S = 1.0
SQUEUE_FAILURES_MAX = 60  # consecutive failed squeue calls (about a minute) before giving up waiting
ACTIVE_STATES = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED",
                 "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                 "RESV_DEL_HOLD", "SPECIAL_EXIT", "POWER_UP_NODE", "UPDATE_DB"}
NFS_WAIT_S = 60.0  # how long a task Slurm calls COMPLETED may take for its log footer to appear


class SlurmConfigError(ValueError):
    """A bad slurm.conf, or an option it has no rule for; the message names the file."""


class SlurmConfig:
    """Rules of a Kaldi/ESPnet slurm.conf.

    command: the submit command words; rules: {option: {value or "*": flag words with $0}};
    defaults: {option: value}; order: option names in order of first appearance.
    """

    def __init__(self, path):
        self.path = path
        self.command = None
        self.rules = {}
        self.defaults = {}
        self.order = []
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise SlurmConfigError(f"config file {path} not found (give --config FILE)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SlurmConfigError(f"cannot read config file {path}: {e}") from None
        default_lines = {}
        for lineno, raw in enumerate(lines, 1):
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if not line:
                continue
            where = f"{path}:{lineno}"
            keyword, _, rest = line.partition(" ")
            rest = rest.strip()
            if keyword == "command":
                if self.command is not None:
                    raise SlurmConfigError(f"{where}: second 'command' line")
                if not rest:
                    raise SlurmConfigError(f"{where}: 'command' needs the submit command, e.g. 'command sbatch'")
                self.command = shlex.split(rest)
            elif keyword in ("option", "default"):
                head, _, flags = rest.partition(" ")
                m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(\S+)$", head)
                if not m:
                    raise SlurmConfigError(f"{where}: expected '{keyword} NAME=VALUE ...', got '{raw.strip()}'")
                name, value = m.group(1), m.group(2)
                if name in NATIVE_OPTIONS:
                    raise SlurmConfigError(f"{where}: --{name} is handled by {PROG} itself and cannot have a rule")
                if keyword == "default":
                    if flags.strip():
                        raise SlurmConfigError(f"{where}: 'default {head}' takes no flags, got '{flags.strip()}'")
                    if value == "*":
                        raise SlurmConfigError(f"{where}: a default needs a concrete value, not '*'")
                    if name in self.defaults:
                        raise SlurmConfigError(f"{where}: second default for '{name}'")
                    self.defaults[name] = value
                    default_lines[name] = where
                else:
                    per_name = self.rules.setdefault(name, {})
                    if value in per_name:
                        raise SlurmConfigError(f"{where}: second rule for '{name}={value}'")
                    try:
                        per_name[value] = shlex.split(flags)
                    except ValueError as e:
                        raise SlurmConfigError(f"{where}: cannot split the flags '{flags}': {e}") from None
                    if name not in self.order:
                        self.order.append(name)
            else:
                raise SlurmConfigError(
                    f"{where}: unknown keyword '{keyword}' (expected command, option or default)")
        if self.command is None:
            raise SlurmConfigError(f"{path}: no 'command' line (e.g. 'command sbatch --export=PATH')")
        for name, value in self.defaults.items():
            if name not in self.rules:
                raise SlurmConfigError(f"{default_lines[name]}: default for '{name}' but no 'option {name}=' rule")
            self._flags(name, value)  # the default must match a rule

    def _flags(self, name, value):
        per_name = self.rules.get(name)
        if per_name is None:
            raise SlurmConfigError(
                f"option --{name} has no rule in {self.path} (add a line 'option {name}=* <sbatch flags with $0>')")
        if value in per_name:
            return list(per_name[value])
        if "*" in per_name:
            return [w.replace("$0", value) for w in per_name["*"]]
        raise SlurmConfigError(
            f"{self.path} has no rule for --{name} {value} (rules for {name}: "
            + ", ".join(f"{name}={v}" for v in per_name) + ")")

    def flags(self, options):
        """sbatch flags for the given {option: value}: first those of the defaults not overridden,
        then those of the given options, each group in config order (so when two rules set the same
        sbatch flag, e.g. gpu's -c and num_threads' --cpus-per-task, the later one in the file wins)."""
        for name, value in options.items():
            self._flags(name, value)  # raises: no rule
        out = []
        for group in ({k: v for k, v in self.defaults.items() if k not in options}, options):
            for name in self.order:
                if name in group:
                    out += self._flags(name, group[name])
        return out


def _write_batch_script(path, spec, cwd, utils_dir, submit_cmd):
    """The batch script: cd to the submit dir, source ./path.sh, run task $SLURM_ARRAY_TASK_ID."""
    args = ["--job_name", spec.job_name if spec.array else "", "--log", os.path.abspath(spec.log_template)]
    if "num_threads" in spec.options:
        args += ["--num_threads", str(spec.options["num_threads"])]
    args += ["--slurm", spec.command_template()]
    words = (["python3", shlex.quote(os.path.join(utils_dir, "jobs_common.py")), "run-task", "--index",
              '"${SLURM_ARRAY_TASK_ID:?this script runs as a Slurm array task}"']
             + [shlex.quote(a) for a in args])
    text = (
        "#!/usr/bin/env bash\n"
        f"# Written by utils/run_slurm.py on {datetime.datetime.now().astimezone():%a %b %e %H:%M:%S %Z %Y}; submitted with\n"
        f"#   {' '.join(shlex.quote(w) for w in submit_cmd)}\n"
        f"# Task i runs the command below with {spec.job_name} replaced by i, and logs to\n"
        f"#   {os.path.abspath(spec.log_template)} (same replacement).\n"
        f"# Re-run one task by hand: SLURM_ARRAY_TASK_ID=i bash {path}\n"
        f"cd {shlex.quote(cwd)} || exit 1\n"
        "if [ -f ./path.sh ]; then . ./path.sh; fi\n"
        "exec " + " ".join(words) + "\n"
    )
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def _squeue_states(job_id):
    """Task states of the job, [] when Slurm no longer knows it; None when squeue failed."""
    try:
        p = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "all", "-o", "%i %T"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        if "Invalid job id" in p.stderr:
            return []
        return None
    return [line.split()[1] for line in p.stdout.splitlines() if len(line.split()) >= 2]


def _scontrol_tasks(job_id):
    """{task index: {'JobState':..., 'Reason':..., 'ExitCode':...}} from `scontrol -o show job`."""
    try:
        p = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in p.stdout.splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
        task = fields.get("ArrayTaskId", "")
        if task.isdigit():
            out[int(task)] = {k: fields.get(k, "?") for k in ("JobState", "Reason", "ExitCode")}
    return out


def _tail(path, n=5):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in f.readlines()[-n:]]
    except OSError:
        return None


def run(spec):
    cwd = os.getcwd()
    progress = jc.Progress(PROG, "")  # first: a bad $UALM_JOBS_PROGRESS_S is an error before any work
    config_path = spec.options.get("config", os.path.join("conf", "slurm.conf"))
    config = SlurmConfig(config_path)
    options = {k: v for k, v in spec.options.items() if k not in NATIVE_OPTIONS}
    if "name" in config.rules and "name" not in options:
        options["name"] = spec.base_name()
    flags = config.flags(options)
    if shutil.which(config.command[0]) is None:
        print(f"{PROG}: error: '{config.command[0]}' (the command in {config_path}) is not on PATH: "
              "Slurm's client tools are not installed here (use utils/run_local.py, or "
              "tools/install_system.sh + tools/slurm_cluster.sh for a local cluster)", file=sys.stderr)
        return 2
    for tool in ("squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            print(f"{PROG}: error: '{tool}' is not on PATH: Slurm's client tools are incomplete", file=sys.stderr)
            return 2

    name = spec.base_name()
    qdir = os.path.join(os.path.dirname(os.path.abspath(spec.log_path(spec.start))), "q")
    os.makedirs(qdir, exist_ok=True)
    script = os.path.join(qdir, f"{name}.sh")
    out_pattern = os.path.join(qdir, f"{name}_%a.out")
    jc.remove_stale_logs(spec)
    for i in spec.indices:
        try:
            os.remove(out_pattern.replace("%a", str(i)))
        except FileNotFoundError:
            pass
    array = f"{spec.start}-{spec.end}"
    if "max_jobs_run" in spec.options:
        array += f"%{int(spec.options['max_jobs_run'])}"
    submit = config.command + flags + ["--parsable", f"--array={array}", f"--output={out_pattern}", script]
    _write_batch_script(script, spec, cwd, os.path.dirname(os.path.realpath(__file__)), submit)

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.signum = signum
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        p = subprocess.run(submit, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{PROG}: sbatch failed (exit {p.returncode}): {p.stderr.strip()}\n"
                  f"{PROG}: command: {' '.join(shlex.quote(w) for w in submit)}", file=sys.stderr)
            return 1
        job_id = p.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            print(f"{PROG}: cannot read the job id from sbatch's output '{p.stdout.strip()}'", file=sys.stderr)
            return 1
        print(f"{PROG}: submitted job {job_id} ({spec.num_tasks} task(s), script {script})", file=sys.stderr)

        failures = 0
        progress.what = f"job {job_id} ({spec.num_tasks} task(s) of {spec.log_template})"
        while True:
            if stop.is_set():
                signum = getattr(stop, "signum", signal.SIGTERM)
                subprocess.run(["scancel", job_id], capture_output=True)
                print(f"{PROG}: interrupted by signal {signum}: cancelled Slurm job {job_id} (scancel {job_id})",
                      file=sys.stderr)
                return 128 + signum
            states = _squeue_states(job_id)
            if states is None:
                failures += 1
                if failures >= SQUEUE_FAILURES_MAX:
                    print(f"{PROG}: warning: squeue failed {failures} times in a row; no longer waiting for "
                          f"job {job_id}", file=sys.stderr)
                    break
            else:
                failures = 0
                if not any(s in ACTIVE_STATES for s in states):
                    break
                running = sum(s in ("RUNNING", "COMPLETING") for s in states)
                ended = sum(s not in ACTIVE_STATES for s in states)
                progress.update(f"{ended} ended, {running} running, {spec.num_tasks - ended - running} pending")
            stop.wait(POLL_S)
    finally:
        for s, h in old.items():
            signal.signal(s, h)

    return _collect(spec, job_id, out_pattern)


def _collect(spec, job_id, out_pattern):
    """Decide every task from its log footer; explain the ones without a footer."""
    codes = {i: jc.read_log_footer(spec.log_path(i)) for i in spec.indices}
    slurm = _scontrol_tasks(job_id) if any(c is None for c in codes.values()) else {}
    # a task Slurm calls COMPLETED whose footer is not visible yet: a shared filesystem lags
    deadline = time.monotonic() + NFS_WAIT_S
    while time.monotonic() < deadline and any(
            codes[i] is None and slurm.get(i, {}).get("JobState") == "COMPLETED" for i in codes):
        time.sleep(1.0)
        codes = {i: (c if c is not None else jc.read_log_footer(spec.log_path(i))) for i, c in codes.items()}
    results = [jc.TaskResult(i, spec.log_path(i), c, 0.0) for i, c in codes.items()]
    message = jc.format_failures(PROG, results, spec.num_tasks)
    if not message:
        return 0
    print(message, file=sys.stderr)
    missing = [i for i, c in codes.items() if c is None]
    for i in missing[:5]:
        s = slurm.get(i)
        why = (f"Slurm says JobState={s['JobState']} Reason={s['Reason']} ExitCode={s['ExitCode']}" if s
               else "Slurm no longer reports it")
        exists = "no '# Ended' line in" if os.path.exists(spec.log_path(i)) else "no log"
        print(f"{PROG}: task {i}: {exists} {spec.log_path(i)}: it never ran or was killed; {why}", file=sys.stderr)
        out = out_pattern.replace("%a", str(i))
        tail = _tail(out)
        if tail:
            print(f"{PROG}: last lines of {out}:\n" + "\n".join("    " + t for t in tail), file=sys.stderr)
    if len(missing) > 5:
        print(f"{PROG}: ... and {len(missing) - 5} more task(s) without a footer", file=sys.stderr)
    return 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n", 1)[1].rstrip())
        return 0
    try:
        spec = jc.parse_call(argv, allowed_options=None)
        return run(spec)
    except (jc.JobsError, SlurmConfigError) as e:
        if isinstance(e, jc.JobsUsageError):
            print(__doc__.split("\n\n", 1)[1].split("\n\n")[0], file=sys.stderr)
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
