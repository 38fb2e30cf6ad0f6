"""The Hugging Face decoder: a tiny random Qwen2 saved locally, loaded, trained and decoded."""
import pytest
import torch

from ualm_tk.lm import HFDecoder, build_decoder


@torch.no_grad()
def test_hidden_states_match_the_hf_model(qwen2_dir):
    path, model = qwen2_dir
    dec = build_decoder("hf", dict(hf_model_dir=str(path))).eval()
    ids = torch.randint(0, 96, (2, 9))
    ref = model(input_ids=ids, output_hidden_states=True)
    embeds = torch.nn.functional.embedding(ids, dec.text_embedding_weight())
    hidden, _ = dec(embeds)
    assert torch.allclose(hidden, ref.hidden_states[-1], atol=1e-5)
    # the kept head turns the hidden states into the model's own logits
    assert torch.allclose(hidden @ dec.text_head_weight().T, ref.logits, atol=1e-4)


def test_text_weights_are_exposed_but_not_parameters(qwen2_dir):
    path, model = qwen2_dir
    dec = HFDecoder(str(path))
    assert torch.equal(dec.text_embedding_weight(), model.get_input_embeddings().weight)
    assert torch.equal(dec.text_head_weight(), model.lm_head.weight)
    assert not any("embed_tokens" in k or "lm_head" in k for k in dec.state_dict())
    dec.release_text_weights()
    with pytest.raises(RuntimeError, match="released"):
        dec.text_embedding_weight()


def test_training_steps_reduce_the_loss(qwen2_dir):
    path, _ = qwen2_dir
    torch.manual_seed(0)
    dec = HFDecoder(str(path), gradient_checkpointing=True).train()
    assert dec.backbone.gradient_checkpointing  # activations are recomputed in backward
    embed = torch.nn.Embedding.from_pretrained(dec.text_embedding_weight().clone(), freeze=False)
    head = torch.nn.Linear(64, 96, bias=False)
    head.weight.data.copy_(dec.text_head_weight())
    params = list(dec.parameters()) + list(embed.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    ids = torch.randint(0, 96, (4, 16))
    losses = []
    for _ in range(8):
        hidden, _ = dec(embed(ids[:, :-1]))
        loss = torch.nn.functional.cross_entropy(head(hidden).flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_greedy_generation_through_the_registry_matches_hf_generate(qwen2_dir):
    from ualm_tk.inference import DecodeConfig, SamplingConfig, generate

    path, model = qwen2_dir
    dec = build_decoder("hf", dict(hf_model_dir=str(path))).eval()
    emb_w, head_w = dec.text_embedding_weight(), dec.text_head_weight()
    prompt = torch.randint(3, 96, (1, 6))
    allowed = torch.ones(1, 96, dtype=torch.bool)
    cfg = DecodeConfig(allowed=allowed, pad_id=0, stop_ids=[95], delays=[0], max_steps=10,
                       sampling=SamplingConfig(greedy=True))
    out = generate(dec, torch.nn.functional.embedding(prompt, emb_w),
                   lambda tok: torch.nn.functional.embedding(tok[..., 0], emb_w),  # [N, 1, 1] -> [N, 1, D]
                   lambda h: (h @ head_w.T),  # [N, 1, D] -> [N, 1, V]
                   cfg)
    ref = model.generate(prompt, max_new_tokens=10, do_sample=False, eos_token_id=95, pad_token_id=0)
    new = ref[0, 6:].tolist()
    n = out.lengths[0].item()
    if 95 not in new:  # our loop forces <stop> into the last row; HF just stops
        assert out.tokens[0, : n - 1, 0].tolist() == new[: n - 1]
    else:
        assert out.tokens[0, :n, 0].tolist() == new[:n]


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        HFDecoder(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="cache_implementation"):
        HFDecoder(str(tmp_path), cache_implementation="paged")
