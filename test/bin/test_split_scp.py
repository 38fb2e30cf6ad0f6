"""split_scp: contiguous, balanced, sorted parts; clear errors."""
import subprocess

import pytest

from ualm_tk.bin import split_scp
from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file


@pytest.mark.parametrize("n,nj", [(10, 3), (7, 7), (5, 1), (1000, 16)])
def test_parts_are_contiguous_balanced_and_sorted(tmp_path, n, nj):
    entries = {f"utt{i:05d}": f"/audio/{i}.wav" for i in range(n)}
    write_kaldi_file(tmp_path / "wav.scp", entries)
    assert split_scp.main([str(tmp_path / "wav.scp"), str(tmp_path / "split"), str(nj)]) == 0
    parts = [read_kaldi_file(tmp_path / "split" / f"wav.{j}.scp") for j in range(1, nj + 1)]
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True)  # the larger parts come first
    merged = [kv for p in parts for kv in p.items()]
    assert merged == list(entries.items())  # contiguous, order kept, nothing lost
    assert sorted((tmp_path / "split").iterdir()) == sorted(tmp_path / "split" / f"wav.{j}.scp" for j in range(1, nj + 1))


def test_cli_errors(tmp_path, python_exe, subprocess_env):
    write_kaldi_file(tmp_path / "text.scp", {"a": "1", "b": "2"})
    proc = subprocess.run(
        [python_exe, "-m", "ualm_tk.bin.split_scp", str(tmp_path / "text.scp"), str(tmp_path / "s"), "3"],
        env=subprocess_env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert f"{tmp_path}/text.scp: NJ=3 is larger than the number of lines (2); use NJ <= 2" in proc.stderr
    assert not (tmp_path / "s").exists()
    (tmp_path / "bad.scp").write_text("b 1\na 2\n")
    assert split_scp.main([str(tmp_path / "bad.scp"), str(tmp_path / "s"), "1"]) == 1
    assert split_scp.main([str(tmp_path / "text.scp"), str(tmp_path / "s"), "0"]) == 1
    # a name without .scp keeps its name
    assert split_scp.main([str(tmp_path / "text.scp"), str(tmp_path / "s"), "2"]) == 0
    write_kaldi_file(tmp_path / "text", {"a": "1", "b": "2"})
    assert split_scp.main([str(tmp_path / "text"), str(tmp_path / "s"), "2"]) == 0
    assert read_kaldi_file(tmp_path / "s" / "text.2.scp") == {"b": "2"}
