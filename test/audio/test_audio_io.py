"""load_audio / save_audio on real files, and the errors users see for bad ones."""
import numpy as np
import pytest
import soundfile as sf

from ualm_tk.audio.io import AudioError, audio_info, load_audio, save_audio

from stage2_fixtures import tone


@pytest.mark.parametrize("ext,sr,channels", [("wav", 48000, 2), ("flac", 8000, 1), ("ogg", 22050, 2)])
def test_load_audio_is_channel_first_float32(tmp_path, ext, sr, channels):
    path = tmp_path / f"x.{ext}"
    sf.write(path, tone(sr, 0.5, channels=channels), sr)
    wav, got_sr = load_audio(path)
    assert got_sr == sr and wav.dtype == np.float32
    assert wav.shape == (channels, int(sr * 0.5))
    # lossless formats decode to the written samples (16-bit rounding)
    if ext != "ogg":
        np.testing.assert_allclose(wav.T, tone(sr, 0.5, channels=channels), atol=1 / 32768 + 1e-7)


def test_load_audio_errors_name_the_file_and_reason(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as e:
        load_audio(missing)
    assert str(e.value) == f"{missing}: file does not exist"
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"this is not audio" * 20)
    with pytest.raises(AudioError) as e:
        load_audio(bad)
    assert e.value.path == str(bad) and str(e.value) == f"{bad}: Format not recognised."
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(tmp_path)
    with pytest.raises(AudioError, match=r"Format not recognised"):
        audio_info(bad)


def test_save_audio_clips_instead_of_wrapping_and_is_atomic(tmp_path):
    path = tmp_path / "sub" / "y.wav"
    wav = np.array([[0.5, 1.5, -2.0, 0.0]], np.float32)  # [C=1, L=4]
    assert save_audio(path, wav, 16000) == 2
    got, sr = sf.read(path, dtype="int16")
    assert sr == 16000 and list(got) == [16384, 32767, -32768, 0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["y.wav"]  # no temp file left


def test_save_audio_rejects_bad_input(tmp_path):
    with pytest.raises(AudioError, match=r"y\.mp4: unsupported extension '\.mp4'"):
        save_audio(tmp_path / "y.mp4", np.zeros((1, 10), np.float32), 16000)
    with pytest.raises(AudioError, match=r"implausible channel count 16000"):
        save_audio(tmp_path / "y.wav", np.zeros((16000, 2), np.float32), 16000)
    assert not (tmp_path / "y.wav").exists()
