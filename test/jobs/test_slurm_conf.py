"""The slurm.conf parser of utils/run_slurm.py (exact rules, wildcards, defaults, errors)."""
import pytest

from jobs_testlib import TEMPLATE_SLURM_CONF
from run_slurm import SlurmConfig, SlurmConfigError

CONF = """\
command sbatch --export=PATH   # the submit command
option name=* --job-name $0
default time=24:00:00
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
default gpu=0
option gpu=0 -p cpu
option gpu=* -p gpu --gres=gpu:$0 -c $0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
"""


def write(tmp_path, text):
    path = tmp_path / "slurm.conf"
    path.write_text(text)
    return str(path)


def test_exact_value_beats_wildcard_and_dollar0_is_the_value(tmp_path):
    c = SlurmConfig(write(tmp_path, CONF))
    assert c.command == ["sbatch", "--export=PATH"]
    assert c.flags({"mem": "0"}) == ["--time", "24:00:00", "-p", "cpu"]
    assert c.flags({"mem": "4G"}) == ["--time", "24:00:00", "-p", "cpu", "--mem-per-cpu", "4G"]
    assert c.flags({"gpu": "2"}) == ["--time", "24:00:00", "-p", "gpu", "--gres=gpu:2", "-c", "2"]
    assert c.flags({"gpu": "0"}) == ["--time", "24:00:00", "-p", "cpu"]


def test_defaults_apply_unless_the_option_is_given(tmp_path):
    c = SlurmConfig(write(tmp_path, CONF))
    assert c.flags({}) == ["--time", "24:00:00", "-p", "cpu"]
    assert c.flags({"time": "1:00:00", "name": "dec"}) == ["-p", "cpu", "--job-name", "dec", "--time", "1:00:00"]


def test_later_rule_wins_for_options_given_together(tmp_path):
    c = SlurmConfig(write(tmp_path, CONF))
    flags = c.flags({"num_threads": "4", "gpu": "1"})
    assert flags[-2:] == ["--cpus-per-task", "4"]  # after gpu's "-c 1": sbatch keeps the last


def test_option_without_rule_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, CONF)
    with pytest.raises(SlurmConfigError, match=rf"option --partition has no rule in {path}"):
        SlurmConfig(path).flags({"partition": "x"})
    only_exact = write(tmp_path, "command sbatch\noption gpu=0 -p cpu\n")
    with pytest.raises(SlurmConfigError, match=rf"{only_exact} has no rule for --gpu 3 \(rules for gpu: gpu=0\)"):
        SlurmConfig(only_exact).flags({"gpu": "3"})


@pytest.mark.parametrize("text, message", [
    ("option gpu=* -p gpu\n", "no 'command' line"),
    ("command sbatch\noptions gpu=* -p gpu\n", ":2: unknown keyword 'options'"),
    ("command sbatch\noption gpu -p gpu\n", ":2: expected 'option NAME=VALUE ...'"),
    ("command sbatch\noption gpu=* -p a\noption gpu=* -p b\n", ":3: second rule for 'gpu=\\*'"),
    ("command sbatch\ndefault gpu=0\n", ":2: default for 'gpu' but no 'option gpu=' rule"),
    ("command sbatch\ndefault gpu=0 -p cpu\noption gpu=0\n", ":2: 'default gpu=0' takes no flags"),
    ("command sbatch\noption max_jobs_run=* --array=1-2\n", ":2: --max_jobs_run is handled by run_slurm.py"),
    ("command sbatch\ncommand qsub\n", ":2: second 'command' line"),
])
def test_bad_config_lines_are_reported_with_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SlurmConfigError, match=message) as e:
        SlurmConfig(path)
    assert path in str(e.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(SlurmConfigError, match=r"config file .*nope.conf not found"):
        SlurmConfig(str(tmp_path / "nope.conf"))


def test_template_config_of_the_recipes(tmp_path):
    c = SlurmConfig(str(TEMPLATE_SLURM_CONF))
    assert c.command == ["sbatch", "--export=PATH"]
    assert c.flags({"name": "decode", "gpu": "2", "mem": "8G", "time": "2:00:00"}) == [
        "--job-name", "decode", "--time", "2:00:00", "--mem-per-cpu", "8G", "-p", "gpu", "--gres=gpu:2", "-c", "2"]
    assert c.flags({"num_threads": "1", "mem": "0", "num_nodes": "2"}) == [
        "--time", "24:00:00", "-p", "cpu", "--nodes", "2", "--cpus-per-task", "1"]
