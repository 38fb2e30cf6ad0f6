"""validate_data_dir: every contract violation is found, with its file, line and key."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ualm_tk.data.kaldi_files import KaldiFileError, read_kaldi_file, write_kaldi_file
from ualm_tk.data.validate import DataDirError, check_data_dir, find_problems, scan_kaldi_file, validate_data_dir

UTTS = [f"utt{i:02d}" for i in range(1, 9)]


def make_data_dir(root: Path) -> Path:
    """A valid data dir with every known file, qa/ and text_only/; audio files are real wavs."""
    d = root / "data" / "train"
    (root / "audio").mkdir(parents=True)
    wav = {}
    for i, u in enumerate(UTTS):
        p = root / "audio" / f"{u}.wav"
        sf.write(p, 0.1 * np.sin(np.arange(1600) * (0.05 + 0.01 * i)), 16000)
        wav[u] = str(p)
    write_kaldi_file(d / "wav.scp", wav)
    write_kaldi_file(d / "text", {u: f"a dog barks {i} times" for i, u in enumerate(UTTS)})
    write_kaldi_file(d / "utt2spk", {u: f"spk{i % 2}" for i, u in enumerate(UTTS)})
    write_kaldi_file(d / "spk2utt", {"spk0": " ".join(UTTS[0::2]), "spk1": " ".join(UTTS[1::2])})
    write_kaldi_file(d / "utt2category", {u: "sound_event" for u in UTTS})
    write_kaldi_file(d / "metadata", {u: json.dumps({"source": "sox", "seed": i}) for i, u in enumerate(UTTS)})
    write_kaldi_file(
        d / "rich_caption",
        {u: json.dumps({"keywords": ["dog"], "layout": "single", "description": "a dog"}) for u in UTTS},
    )
    write_kaldi_file(d / "utt2num_samples", {u: "1600" for u in UTTS})
    qa = {f"{u}-q{j:02d}": u for u in UTTS for j in (1, 2)}
    write_kaldi_file(d / "qa" / "question", {q: "what animal is heard?" for q in qa})
    write_kaldi_file(d / "qa" / "answer", {q: "a dog" for q in qa})
    write_kaldi_file(d / "qa" / "qtype", {q: "what" for q in qa})
    write_kaldi_file(d / "qa" / "qa2utt", qa)
    t = [f"t{i:03d}" for i in range(3)]
    write_kaldi_file(d / "text_only" / "question", {k: "what is two plus two?" for k in t})
    write_kaldi_file(d / "text_only" / "answer", {k: "four" for k in t})
    write_kaldi_file(d / "text_only" / "qtype", {k: "arith" for k in t})
    write_kaldi_file(d / "text_only" / "problem_id", {k: f"add:{i}:2" for i, k in enumerate(t)})
    write_kaldi_file(d / "text_only" / "solution", {k: "two plus two is four" for k in t})
    return d


@pytest.fixture()
def data_dir(tmp_path):
    return make_data_dir(tmp_path)


def replace_line(path: Path, lineno: int, new: bytes):
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = new
    path.write_bytes(b"\n".join(lines))


def messages(d, **kw):
    return [str(p) for p in find_problems(d, **kw)]


def test_valid_dir_passes_with_summary(data_dir):
    report = check_data_dir(data_dir)
    assert report.ok and report.num_utts == 8
    assert report.counts == {"qa": 16, "text_only": 3}
    assert report.summary().startswith(f"{data_dir}: 8 utterances, qa/: 16 entries, text_only/: 3 entries, files: ")
    assert "qa/qa2utt" in report.files and "rich_caption" in report.files
    assert "text_only/solution" in report.files and not report.warnings  # a known optional file


def test_text_only_solution_is_optional(data_dir):
    (data_dir / "text_only" / "solution").unlink()
    assert check_data_dir(data_dir).ok


@pytest.mark.parametrize(
    "file,lineno,new,expected",
    [
        ("wav.scp", 3, b" utt03 /x.wav", "wav.scp:3: line starts with whitespace (no key)"),
        ("utt2spk", 4, b"", "utt2spk:4: empty line"),
        ("utt2spk", 4, b"utt03 spk0", "utt2spk:4: key 'utt03': duplicate key (first seen on line 3)"),
        ("utt2spk", 2, b"utt09 spk1", "utt2spk:3: key 'utt03': keys not sorted: 'utt03' after 'utt09' (line 2)"),
        ("utt2category", 5, b"utt05 caf\xe9", "utt2category:5: key 'utt05': not valid UTF-8 (byte offset 9 of the line)"),
        ("utt2category", 6, b"utt06", "utt2category:6: key 'utt06': empty value"),
        ("text", 2, b"utt02    ", "text:2: key 'utt02': empty caption"),
        ("text", 7, b"utt07 ... !", "text:7: key 'utt07': caption has no letters or digits: '... !'"),
        ("utt2spk", 1, b"utt01 spk 0", "utt2spk:1: key 'utt01': value must be one token without whitespace"),
        ("metadata", 3, b'utt03 {"source": "sox",}',
         "metadata:3: key 'utt03': metadata is not valid JSON: Expecting property name enclosed in double quotes"),
        ("metadata", 4, b"utt04 [1, 2]", "metadata:4: key 'utt04': metadata must be a JSON object, got list"),
        ("rich_caption", 8, b'utt08 {"keywords": [], "description": "x"}',
         "rich_caption:8: key 'utt08': rich_caption lacks required field(s) 'layout'"),
        ("utt2num_samples", 2, b"utt02 16k", "utt2num_samples:2: key 'utt02': not a positive integer: '16k'"),
        ("utt2num_samples", 5, b"utt05 0", "utt2num_samples:5: key 'utt05': not a positive integer: '0'"),
        ("wav.scp", 6, b"utt06 /no/such/file.wav", "wav.scp:6: key 'utt06': audio file does not exist: /no/such/file.wav"),
        ("qa/qa2utt", 3, b"utt02-q01 utt99", "qa/qa2utt:3: key 'utt02-q01': utterance 'utt99' is not a key of"),
        ("qa/qa2utt", 4, b"utt02-q02 utt03",
         "qa/qa2utt:4: key 'utt02-q02': key does not have the form '<utt>-q<NN>' for its utterance 'utt03'"),
        ("qa/qtype", 1, b"utt01-q01 yes no", "qa/qtype:1: key 'utt01-q01': value must be one token"),
        ("text_only/answer", 2, b"t001", "text_only/answer:2: key 't001': empty value"),
        ("text_only/problem_id", 3, b"t003 add:2:2",
         "text_only/problem_id: key sets differ: 1 key(s) of"),
        ("text_only/solution", 1, b"t000 ", "text_only/solution:1: key 't000': empty value"),
        ("text_only/solution", 3, b"t009 two plus two is four",
         "text_only/solution: key sets differ: 1 key(s) of"),
    ],
)
def test_each_bad_line_is_reported_with_file_line_key(data_dir, file, lineno, new, expected):
    replace_line(data_dir / file, lineno, new)
    msgs = messages(data_dir)
    assert any(m.startswith(f"{data_dir}/{expected}") for m in msgs), msgs


def test_key_set_mismatch_names_both_files_and_examples(data_dir):
    text = read_kaldi_file(data_dir / "text")
    write_kaldi_file(data_dir / "text", {k: v for k, v in text.items() if k not in UTTS[1:8]} | {"zz1": "extra"})
    msgs = messages(data_dir)
    wav, txt = data_dir / "wav.scp", data_dir / "text"
    assert (
        f"{txt}: key sets differ: 7 key(s) of {wav} missing from {txt}: "
        "'utt02', 'utt03', 'utt04', 'utt05', 'utt06' (and 2 more)"
    ) in msgs
    assert f"{txt}: key sets differ: 1 key(s) of {txt} missing from {wav}: 'zz1'" in msgs


def test_all_problems_are_collected_not_just_the_first(data_dir):
    replace_line(data_dir / "text", 2, b"utt02 ")
    replace_line(data_dir / "text", 5, b"utt05 \t ")
    replace_line(data_dir / "utt2num_samples", 1, b"utt01 -3")
    replace_line(data_dir / "qa" / "qa2utt", 16, b"utt08-q02 nobody")
    (data_dir / "utt2category").unlink()
    (data_dir / "text_only" / "qtype").unlink()
    msgs = messages(data_dir)
    assert f"{data_dir}/text:2: key 'utt02': empty caption" in msgs
    assert f"{data_dir}/text:5: key 'utt05': empty caption" in msgs
    assert f"{data_dir}/utt2num_samples:1: key 'utt01': not a positive integer: '-3'" in msgs
    assert any(m.startswith(f"{data_dir}/qa/qa2utt:16: key 'utt08-q02': utterance 'nobody'") for m in msgs)
    assert f"{data_dir}/text_only/qtype: required file is missing" in msgs
    assert len(msgs) == 6, msgs  # plus the qa2utt key-form problem; utt2category is optional


def test_missing_required_and_empty_dirs(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    assert messages(d) == [f"{d}/text: required file is missing", f"{d}/wav.scp: required file is missing"]
    (d / "wav.scp").write_text("")
    (d / "text").write_text("")
    assert messages(d) == [f"{d}/wav.scp: no utterances"]
    assert messages(tmp_path / "nope") == [f"{tmp_path / 'nope'}: not a directory"]


def test_audio_existence_check_is_optional(data_dir):
    replace_line(data_dir / "wav.scp", 1, b"utt01 relative/missing.wav")
    msgs = messages(data_dir, check_audio_exists=True)
    assert msgs == [
        f"{data_dir}/wav.scp:1: key 'utt01': audio file does not exist: relative/missing.wav "
        f"(relative to the current directory {Path.cwd()})"
    ]
    assert messages(data_dir, check_audio_exists=False) == []


def test_spk2utt_and_rejected_consistency(data_dir):
    write_kaldi_file(data_dir / "spk2utt", {"spk0": " ".join(UTTS[0::2] + ["utt02"]), "spk1": "utt03 utt04"})
    write_kaldi_file(data_dir / "rejected", {"utt04": "silent (peak -inf dBFS < -60 dBFS)", "zzz": "zero length"})
    msgs = messages(data_dir)
    sp, rej = data_dir / "spk2utt", data_dir / "rejected"
    assert f"{sp}:1: key 'spk0': utterance 'utt02' belongs to speaker 'spk1' in {data_dir}/utt2spk" in msgs
    assert f"{sp}:2: key 'spk1': utterance 'utt03' belongs to speaker 'spk0' in {data_dir}/utt2spk" in msgs
    assert f"{sp}: 2 utterance(s) of {data_dir}/utt2spk not listed: 'utt06', 'utt08'" in msgs
    assert f"{rej}:1: key 'utt04': key is rejected but also present in {data_dir}/wav.scp" in msgs
    assert len(msgs) == 4, msgs


def test_unknown_files_are_warnings_only(data_dir, caplog):
    (data_dir / "notes.txt").write_text("free text\n")
    (data_dir / "extra_dir").mkdir()
    (data_dir / "data").mkdir()  # shard outputs of stage 2: ignored silently
    report = validate_data_dir(data_dir)
    assert report.ok
    assert report.warnings == [
        f"{data_dir}/extra_dir: unknown directory (not checked)",
        f"{data_dir}/notes.txt: unknown file (not checked)",
    ]
    assert "notes.txt: unknown file" in caplog.text


def test_check_data_dir_raises_with_every_problem(data_dir):
    replace_line(data_dir / "text", 1, b"utt01 ")
    replace_line(data_dir / "utt2spk", 8, b"utt08")
    with pytest.raises(DataDirError) as e:
        check_data_dir(data_dir)
    assert len(e.value.problems) == 2
    assert f"{data_dir}/text:1: key 'utt01': empty caption" in str(e.value)
    assert f"{data_dir}/utt2spk:8: key 'utt08': empty value" in str(e.value)


@pytest.mark.parametrize(
    "content",
    [
        b"a 1\nb 2\n\nc 3\n",
        b"a 1\nc 2\nb 3\nb 4\n",
        b"a 1\n b 2\n",
        b"a 1\nb \xff\n",
        b"a 1\nb\nc 3\n",
        b"a 1\na 2\n",
    ],
)
def test_collecting_scan_agrees_with_the_strict_reader(tmp_path, content):
    """The first problem the validator lists is the error read_kaldi_file raises."""
    path = tmp_path / "f"
    path.write_bytes(content)
    with pytest.raises(KaldiFileError) as e:
        read_kaldi_file(path)
    problems = []
    scan_kaldi_file(str(path), problems)
    first = problems[0]
    assert (first.line, first.problem) == (e.value.lineno, e.value.problem)
    # the validator also names the key of a badly encoded line, which the reader leaves out
    assert first.key == e.value.key or (e.value.key == "" and "UTF-8" in first.problem)
