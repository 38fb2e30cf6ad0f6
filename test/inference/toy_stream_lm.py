"""A toy multi-stream LM around a real decoder: summed stream embeddings in, shared head out.

Vocabulary: specials 0..3 (pad, bos, eos, eot), then K audio blocks of C codes each. This is the
shape the UALM model will have; the inference loop only sees ``embed_fn`` / ``logits_fn``.
"""
import torch

from ualm_tk.inference import stream_vocab_mask
from ualm_tk.lm import TransformerDecoder

PAD, BOS, EOS, EOT = 0, 1, 2, 3
NUM_SPECIALS = 4


class ToyStreamLM(torch.nn.Module):
    def __init__(self, decoder, num_streams=3, codebook=16):
        super().__init__()
        self.decoder, self.K, self.C = decoder, num_streams, codebook
        self.V = NUM_SPECIALS + num_streams * codebook
        D = decoder.hidden_size
        self.embed = torch.nn.Embedding(self.V, D)
        self.stream_emb = torch.nn.Parameter(torch.randn(num_streams, D) * 0.5)
        self.head = torch.nn.Linear(D, self.V, bias=False)
        with torch.no_grad():
            self.head.weight.mul_(20.0)  # peaky enough that top-k matters

    def block(self, k):
        lo = NUM_SPECIALS + k * self.C
        return lo, lo + self.C

    def embed_fn(self, tokens):  # [N, S, K] -> [N, S, D]
        return self.embed(tokens).sum(2)

    def logits_fn(self, hidden):  # [N, 1, D] -> [N, K, V]
        return self.head(hidden[:, 0, None, :] + self.stream_emb[None])

    def audio_allowed(self):
        """Stream 0: its block + eos/eot + pad; stream k>=1: its block + pad."""
        ranges = [self.block(k) for k in range(self.K)]
        specials = [[PAD, EOS, EOT]] + [[PAD]] * (self.K - 1)
        return stream_vocab_mask(self.V, ranges, specials)


def prompt_tokens(batch, length, lm, seed=1):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(NUM_SPECIALS, lm.V, (batch, length, lm.K), generator=g)
    toks[:, 0] = BOS
    return toks


@torch.no_grad()
def naive_greedy(lm, prompt, allowed, delays, max_steps, scale=None, uncond=None):
    """Reference: greedy decoding recomputing the full sequence every step, row by row.

    Implements the delay rules from their definition, independently of ``generate``.
    Returns a list of per-row token lists ``[[K ids] * length]``.
    """
    bias = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    tail = max(1, max(delays))
    results = []
    for b in range(prompt.shape[0]):
        seq = prompt[b:b + 1]  # [1, S, K]
        useq = None if uncond is None else uncond[b:b + 1]
        rows, end = [], None
        for t in range(max_steps):
            h, _ = lm.decoder(lm.embed_fn(seq))
            logits = lm.logits_fn(h[:, -1:])[0]  # [K, V]
            if scale is not None:
                hu, _ = lm.decoder(lm.embed_fn(useq))
                logits = scale * logits + (1 - scale) * lm.logits_fn(hu[:, -1:])[0]
            tok = (logits + bias).argmax(-1).tolist()
            for k, d in enumerate(delays):
                if t < d or (end is not None and t >= end + d):
                    tok[k] = PAD
            if end is None and (tok[0] in (EOS, EOT) or t == max_steps - tail):
                if tok[0] not in (EOS, EOT):
                    tok[0] = EOS
                end = t
            rows.append(tok)
            if end is not None and t >= end + tail - 1:
                break
            step = torch.tensor(tok)[None, None]
            seq = torch.cat([seq, step], 1)
            if useq is not None:
                useq = torch.cat([useq, step], 1)
        results.append(rows)
    return results
