"""The vae registry: shapes and rates, mono/stereo, save/restore, KL term, bad inputs."""
import pytest
import torch
import yaml

from ualm_tk.utils.component_dir import ComponentDirError, save_component
from ualm_tk.vae import AbsVAE, VAEInputError, build_vae, load_vae, save_vae, vae_choices

# a small configuration per registered VAE; a new registration must add its own here
SMALL_CONF = {
    "residual_vae": dict(latent_dim=4, encoder_channels=[4, 8, 8], encoder_strides=[2, 4, 5],
                         decoder_dim=16, decoder_layers=1),
}


def test_every_registered_vae_has_a_small_conf():
    assert set(vae_choices.classes) == set(SMALL_CONF)


def _build(name, channels, **kw):
    torch.manual_seed(0)
    return build_vae(name, dict(SMALL_CONF[name], channels=channels, **kw)).eval()


@pytest.mark.parametrize("name", sorted(SMALL_CONF))
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("length", [16000, 12345, 7])
def test_enhance_shapes_and_rates(name, channels, length):
    vae = _build(name, channels)
    assert isinstance(vae, AbsVAE)
    assert (vae.input_sample_rate, vae.output_sample_rate, vae.channels) == (16000, 48000, channels)
    wav = 0.1 * torch.randn(2, 1, length)
    out = vae.enhance(wav, sample_rate=16000)
    assert out.shape == (2, channels, 3 * length)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    mean, logvar = vae.encode(wav)
    assert mean.shape == logvar.shape and mean.shape[:2] == (2, 4)
    assert vae.decode(mean, wav).shape == out.shape


@pytest.mark.parametrize("name", sorted(SMALL_CONF))
def test_batch_items_are_independent_and_deterministic(name):
    vae = _build(name, 2)
    a, b = 0.1 * torch.randn(1, 1, 8000), 0.1 * torch.randn(1, 1, 8000)
    both = vae.enhance(torch.cat([a, b]))
    assert torch.allclose(both[0:1], vae.enhance(a), atol=1e-5)
    assert torch.allclose(both[1:2], vae.enhance(b), atol=1e-5)
    assert torch.equal(vae.enhance(a), vae.enhance(a))


def test_other_output_rate():
    vae = build_vae("residual_vae", dict(SMALL_CONF["residual_vae"], output_sample_rate=32000)).eval()
    assert vae.enhance(torch.zeros(1, 1, 1000)).shape == (1, 1, 2000)
    with pytest.raises(ValueError, match="whole number"):
        build_vae("residual_vae", dict(SMALL_CONF["residual_vae"], output_sample_rate=44100))


def test_untrained_residual_vae_is_close_to_plain_resampling():
    vae = _build("residual_vae", 1)
    wav = 0.3 * torch.sin(torch.linspace(0, 2000, 16000)).view(1, 1, -1)
    out, base = vae.enhance(wav), vae.upsample(wav)
    assert (out - base).abs().max() < 0.02 * base.abs().max()


def test_stereo_is_mid_plus_minus_side():
    vae = _build("residual_vae", 2)
    wav = 0.1 * torch.randn(1, 1, 4000)
    out = vae.enhance(wav)
    mean, _ = vae.encode(wav)
    res = vae.decode_residual(mean, wav)[..., : out.shape[-1]]
    mid = vae.upsample(wav) + res[:, :1]
    assert torch.allclose((out[:, 0] + out[:, 1]) / 2, mid[:, 0], atol=1e-6)
    assert torch.allclose((out[:, 0] - out[:, 1]) / 2, res[:, 1], atol=1e-6)
    assert not torch.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize("name", sorted(SMALL_CONF))
@pytest.mark.parametrize("channels", [1, 2])
def test_restore_from_directory_gives_identical_outputs(tmp_path, name, channels):
    vae = _build(name, channels)
    with torch.no_grad():  # move away from the initialisation so the weights matter
        for p in vae.parameters():
            p.add_(0.01 * torch.randn_like(p))
    conf = dict(SMALL_CONF[name], channels=channels)
    save_vae(vae, tmp_path / "vae", name, conf, meta={"note": "test"})
    doc = yaml.safe_load((tmp_path / "vae" / "component.yaml").read_text())
    assert doc["registry"] == "vae" and doc["name"] == name
    assert doc["meta"]["channels"] == channels and doc["meta"]["output_sample_rate"] == 48000
    restored = load_vae(tmp_path / "vae")
    assert type(restored) is type(vae) and not restored.training
    wav = 0.1 * torch.randn(2, 1, 9000)
    assert torch.equal(restored.enhance(wav), vae.enhance(wav))


def test_load_rejects_wrong_directories(tmp_path):
    with pytest.raises(ComponentDirError, match="not a directory"):
        load_vae(tmp_path / "missing")
    save_component(tmp_path / "codec", "codec", "mini_rvq", {}, {"w": torch.zeros(1)})
    with pytest.raises(ComponentDirError, match="expected a 'vae'"):
        load_vae(tmp_path / "codec")
    vae = _build("residual_vae", 1)
    save_vae(vae, tmp_path / "bad", "residual_vae", dict(SMALL_CONF["residual_vae"], channels=2))
    with pytest.raises(ComponentDirError, match="weights do not fit"):
        load_vae(tmp_path / "bad")
    save_component(tmp_path / "unknown", "vae", "no_such_vae", {}, {})
    with pytest.raises(ComponentDirError, match="no_such_vae"):
        load_vae(tmp_path / "unknown")


def test_kl_term():
    zeros = torch.zeros(2, 4, 10)
    assert AbsVAE.kl_divergence(zeros, zeros).item() == 0.0  # posterior == prior
    # KL(N(1, 1) || N(0, 1)) = 1/2 per element; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2
    assert AbsVAE.kl_divergence(torch.ones(3, 2), torch.zeros(3, 2)).item() == pytest.approx(0.5)
    assert AbsVAE.kl_divergence(torch.zeros(3), torch.ones(3)).item() == pytest.approx(
        (torch.e - 2) / 2, rel=1e-6)
    vae = _build("residual_vae", 1).train()
    out, kl = vae(0.1 * torch.randn(1, 1, 4000))
    assert kl.item() > 0 and kl.requires_grad
    torch.manual_seed(1)
    a, _ = vae(torch.zeros(1, 1, 4000) + 0.1)
    b, _ = vae(torch.zeros(1, 1, 4000) + 0.1, sample=False)
    assert not torch.equal(a, b)  # training samples z; sample=False uses the mean


@pytest.mark.parametrize(
    "wav, rate, message",
    [
        (torch.zeros(1, 1, 16000), 22050, "22050 Hz, but this VAE takes 16000"),
        (torch.zeros(1, 1, 0), 16000, "empty input"),
        (torch.zeros(0, 1, 100), 16000, "empty input"),
        (torch.zeros(1, 2, 100), 16000, r"mono tensor \[B, 1, L\]"),
        (torch.zeros(100), 16000, r"mono tensor \[B, 1, L\]"),
        (torch.zeros(1, 1, 100, dtype=torch.int16), 16000, "float tensor"),
    ],
)
def test_bad_inputs_give_clear_errors(wav, rate, message):
    with pytest.raises(VAEInputError, match=message):
        _build("residual_vae", 1).enhance(wav, sample_rate=rate)


def test_nan_input_names_position():
    wav = torch.zeros(2, 1, 32000)
    wav[1, 0, 16000] = float("nan")
    with pytest.raises(VAEInputError, match=r"1 non-finite samples .* item 1 at sample 16000 \(1.000 s\)"):
        _build("residual_vae", 1).enhance(wav)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="channels must be 1"):
        build_vae("residual_vae", dict(channels=3))
    with pytest.raises(ValueError, match="residual_vae"):
        build_vae("nonexistent", {})


CONF_DIR = __import__("pathlib").Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/ualm1/conf/vae"


@pytest.mark.parametrize("yaml_name", ["tiny.yaml", "mini.yaml", "large.yaml"])
def test_shipped_configs_build(yaml_name):
    from ualm_tk.vae.espnet_model import ESPnetVAEModel

    conf = yaml.safe_load((CONF_DIR / yaml_name).read_text())
    vae = build_vae(conf["vae"], conf["vae_conf"])
    model = ESPnetVAEModel(vae, **conf["model_conf"])
    assert vae.channels == 2 and vae.output_sample_rate == 48000
    assert sum(p.numel() for p in model.discriminator.parameters()) > 0


def test_level_conditioning_keeps_silence_silent():
    vae = _build("residual_vae", 2)
    wav = 0.3 * torch.randn(1, 1, 16000)
    wav[..., 4000:12000] = 0.0  # digital silence in the middle
    out = vae.enhance(wav)
    assert out[..., 12000 + 960:36000 - 960].abs().max() < 1e-4  # output silent there too
    assert out[..., :12000 - 960].abs().max() > 0.1
    plain = build_vae("residual_vae", dict(SMALL_CONF["residual_vae"], level_conditioning=False)).eval()
    assert plain.enhance(wav)[..., 12000 + 960:36000 - 960].abs().max() > 1e-4  # a noise floor
