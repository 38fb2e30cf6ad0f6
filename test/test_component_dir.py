import pytest
import torch

from ualm_tk.utils.component_dir import ComponentDirError, read_component, save_component


def test_round_trip_and_registry_check(tmp_path):
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    save_component(tmp_path / "c", "codec", "mini_rvq", {"dim": 3}, sd, {"sample_rate": 16000})
    doc, state = read_component(tmp_path / "c", "codec")
    assert doc["name"] == "mini_rvq" and doc["conf"] == {"dim": 3}
    assert doc["meta"]["sample_rate"] == 16000
    assert torch.equal(state["w"], sd["w"])
    with pytest.raises(ComponentDirError, match="holds a 'codec' component, expected a 'vae'"):
        read_component(tmp_path / "c", "vae")


def test_external_weights_and_missing_files(tmp_path):
    save_component(tmp_path / "x", "codec", "xcodec", {"hf_model_dir": "/some/dir"}, None)
    doc, state = read_component(tmp_path / "x", "codec")
    assert state is None and not (tmp_path / "x" / "model.pth").exists()
    with pytest.raises(ComponentDirError, match="not a directory"):
        read_component(tmp_path / "nope", "codec")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ComponentDirError, match="component.yaml: missing"):
        read_component(tmp_path / "empty", "codec")
    save_component(tmp_path / "y", "codec", "mini_rvq", {}, {"w": torch.zeros(1)})
    (tmp_path / "y" / "model.pth").unlink()
    with pytest.raises(ComponentDirError, match="model.pth: missing"):
        read_component(tmp_path / "y", "codec")
