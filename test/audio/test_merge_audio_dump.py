"""Stage 2 end to end on a small set: split -> format shards -> merge -> validated dump dir."""
import subprocess

import soundfile as sf

from ualm_tk.bin import format_audio, merge_audio_dump, split_scp
from ualm_tk.data.kaldi_files import read_kaldi_file
from ualm_tk.data.validate import validate_data_dir

from stage2_fixtures import EXPECTED_KEPT_SAMPLES, EXPECTED_REJECTED, write_data_dir

FMT = ["--fs", "16000", "--max_dur", "3"]


def format_parts(data_dir, work, nj=3):
    assert split_scp.main([str(data_dir / "wav.scp"), str(work / "split"), str(nj)]) == 0
    parts = []
    for j in range(1, nj + 1):
        out = work / f"format.{j}"
        assert format_audio.main(["--wav_scp", str(work / "split" / f"wav.{j}.scp"), "--out_dir", str(out), *FMT]) == 0
        parts.append(out)
    return parts


def test_merge_writes_a_valid_dump_dir_with_report(tmp_path, python_exe, subprocess_env):
    data = write_data_dir(tmp_path)
    work = tmp_path / "dump" / "audio" / "train" / "data"
    parts = format_parts(data, work)
    out = tmp_path / "dump" / "audio" / "train"
    proc = subprocess.run(
        [python_exe, "-m", "ualm_tk.bin.merge_audio_dump", "--data_dir", str(data), "--parts", *map(str, parts),
         "--out_dir", str(out)],
        env=subprocess_env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == (
        f"{data} -> {out}: kept 4 of 12, rejected 8: by reason missing file=1, unreadable=1, zero length=1, "
        "contains NaN/Inf=1, silent=2, too short=1, too long=1"
    )
    kept = set(EXPECTED_KEPT_SAMPLES)
    wav = read_kaldi_file(out / "wav.scp")
    assert set(wav) == kept
    for key, path in wav.items():
        assert sf.info(path).samplerate == 16000 and sf.info(path).channels == 1
    assert read_kaldi_file(out / "utt2num_samples") == {k: str(v) for k, v in EXPECTED_KEPT_SAMPLES.items()}
    src_wav = read_kaldi_file(data / "wav.scp")
    assert read_kaldi_file(out / "master.scp") == {k: src_wav[k] for k in kept}
    for name in ("text", "utt2spk", "utt2category", "metadata", "rich_caption"):
        src = read_kaldi_file(data / name)
        assert read_kaldi_file(out / name) == {k: src[k] for k in kept}, name
    assert read_kaldi_file(out / "spk2utt") == {"good": " ".join(sorted(kept))}
    qa2utt = read_kaldi_file(out / "qa" / "qa2utt")
    assert len(qa2utt) == 8 and set(qa2utt.values()) == kept
    assert set(read_kaldi_file(out / "qa" / "question")) == set(qa2utt)
    for name in ("question", "answer", "qtype"):
        assert (out / "text_only" / name).read_bytes() == (data / "text_only" / name).read_bytes()

    rejected = read_kaldi_file(out / "rejected")
    assert set(rejected) == set(EXPECTED_REJECTED)
    report = (out / "rejected_report.md").read_text()
    assert "| silent | 2 |" in report and "| too long | 1 |" in report
    assert "## silent (2)" in report
    assert f"- `bad_short`: too short (0.12 s < 0.5 s) (master: `{src_wav['bad_short']}`)" in report
    assert validate_data_dir(out).ok


def test_merge_fails_naming_keys_of_a_missing_part(tmp_path, capsys, caplog):
    data = write_data_dir(tmp_path)
    parts = format_parts(data, tmp_path / "work")
    out = tmp_path / "out"
    lost = list(read_kaldi_file(tmp_path / "work" / "split" / "wav.2.scp"))
    assert merge_audio_dump.main(["--data_dir", str(data), "--parts", str(parts[0]), str(parts[2]),
                                  "--out_dir", str(out)]) == 1
    assert f"4 key(s) of {data}/wav.scp are in no part" in caplog.text
    assert all(f"'{k}'" in caplog.text for k in lost)
    assert not (out / "wav.scp").exists()

    # a shard killed before the end has no wav.scp: named as unfinished
    caplog.clear()
    (parts[1] / "wav.scp").unlink()
    assert merge_audio_dump.main(["--data_dir", str(data), "--parts", *map(str, parts), "--out_dir", str(out)]) == 1
    assert f"{parts[1]}/wav.scp: missing: the shard in {parts[1]} did not finish" in caplog.text


def test_merge_refuses_stale_part_and_invalid_source(tmp_path, caplog):
    data = write_data_dir(tmp_path)
    parts = format_parts(data, tmp_path / "work")
    args = ["--data_dir", str(data), "--parts", *map(str, parts), "--out_dir", str(tmp_path / "out")]
    wav = (data / "wav.scp").read_text().replace("/g16.wav", "/moved/g16.wav")
    (data / "wav.scp").write_text(wav)
    assert merge_audio_dump.main(args) == 1
    assert "master.scp: key 'good_16k_mono': formatted from" in caplog.text and "stale shard" in caplog.text
    caplog.clear()
    (data / "text").write_text((data / "text").read_text().replace("a clip called bad zero", " "))
    assert merge_audio_dump.main(args) == 1
    assert f"{data}/text:8: key 'bad_zero': empty caption" in caplog.text


def test_merge_without_rejections(tmp_path):
    from stage2_fixtures import tone
    from ualm_tk.data.kaldi_files import write_kaldi_file

    d = tmp_path / "data" / "dev"
    scp = {}
    for k in ("a", "b"):
        sf.write(tmp_path / f"{k}.flac", tone(44100, 1.0, channels=2), 44100)
        scp[k] = str(tmp_path / f"{k}.flac")
    write_kaldi_file(d / "wav.scp", scp)
    write_kaldi_file(d / "text", {"a": "a tone", "b": "another tone"})
    parts = format_parts(d, tmp_path / "work", nj=2)
    out = tmp_path / "dump"
    assert merge_audio_dump.main(["--data_dir", str(d), "--parts", *map(str, parts), "--out_dir", str(out)]) == 0
    assert read_kaldi_file(out / "rejected") == {}
    assert read_kaldi_file(out / "utt2num_samples") == {"a": "16000", "b": "16000"}
    assert "No clip was rejected." in (out / "rejected_report.md").read_text()
    assert not (out / "spk2utt").exists() and not (out / "qa").exists()
