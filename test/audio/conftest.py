"""Fixtures for the stage-2 tests (helpers live in stage2_fixtures.py)."""
import pytest

from stage2_fixtures import write_mixed_shard


@pytest.fixture()
def mixed_shard(tmp_path):
    from ualm_tk.data.kaldi_files import write_kaldi_file

    scp = write_mixed_shard(tmp_path)
    write_kaldi_file(tmp_path / "wav.scp", scp)
    return tmp_path / "wav.scp", scp
