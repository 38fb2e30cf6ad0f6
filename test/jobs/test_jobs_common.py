"""utils/jobs_common.py: call parsing, JOB substitution, time limits, log footers."""
import pytest

from jobs_common import JobsUsageError, parse_call, parse_time_limit, read_log_footer, run_task


def test_parse_call_forms():
    s = parse_call(["--max-jobs-run", "1", "--gpu=1", "--max_jobs_run", "3", "JOB=2:4", "exp/log/dec.JOB.log", "echo", "JOB", "|", "sort"])
    assert s.options == {"max_jobs_run": "3", "gpu": "1"}
    assert list(s.indices) == [2, 3, 4]
    assert s.command(3) == "echo 3 | sort" and s.log_path(3) == "exp/log/dec.3.log"
    assert s.base_name() == "dec"
    one = parse_call(["log/x.log", "echo JOB"])
    assert (one.array, list(one.indices), one.command(1)) == (False, [1], "echo JOB")
    other_name = parse_call(["TASK=5", "log/x.TASK.log", "echo TASK JOB"])
    assert (list(other_name.indices), other_name.command(5), other_name.log_path(5)) == ([5], "echo 5 JOB", "log/x.5.log")


@pytest.mark.parametrize("text, seconds", [
    ("5", 300), ("0:02", 2), ("1:30", 90), ("2:00:00", 7200), ("1-0", 86400), ("1-2:30", 95400), ("0-0:0:7", 7),
])
def test_time_limit_formats_follow_slurm(text, seconds):
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize("text", ["", "1h", "0", "0:00", "-1", "1:2:3:4"])
def test_bad_time_limits_are_refused(text):
    with pytest.raises(JobsUsageError, match="--time"):
        parse_time_limit(text)


def test_run_task_writes_kaldi_log_and_footer_is_read_back(tmp_path):
    log = tmp_path / "deep" / "dir" / "t.log"
    r = run_task("echo out; echo err >&2; exit 3", str(log), num_threads=2)
    assert r.code == 3
    lines = log.read_text().splitlines()
    assert lines[0] == "# echo out; echo err >&2; exit 3" and lines[1].startswith("# Started at ")
    assert lines[2:4] == ["out", "err"]
    assert lines[4].startswith("# Accounting: time=") and lines[4].endswith(" threads=2")
    assert read_log_footer(str(log)) == 3
    assert read_log_footer(str(tmp_path / "missing.log")) is None
    (tmp_path / "cut.log").write_text("# cmd\n# Started at x\nhalf")
    assert read_log_footer(str(tmp_path / "cut.log")) is None
