"""Patterns: build/revert round trips for every K and many lengths, tail handling, registry."""
import argparse

import pytest
import torch

from ualm_tk.patterns import AbsPattern, DelayPattern, ParallelPattern, PatternError, build_pattern, pattern_choices

PAD = 0
LENGTHS = [1, 2, 3, 7, 16, 50]


def _codes(B, K, T, seed=0):
    g = torch.Generator().manual_seed(seed + 97 * K + T)
    return torch.randint(1, 1000, (B, K, T), generator=g)  # never the pad id


@pytest.mark.parametrize("name", sorted(pattern_choices.classes))
@pytest.mark.parametrize("K", range(1, 9))
def test_round_trip_all_K_and_lengths(name, K):
    pat = build_pattern(name, pad_id=PAD)
    for T in LENGTHS:
        codes = _codes(2, K, T)
        seq = pat.build(codes)
        assert seq.shape == (2, pat.num_positions(T, K), K)
        assert pat.num_frames(seq.shape[1], K) == T
        assert torch.equal(pat.revert(seq), codes)
        # pad exactly where valid_mask says no code
        valid = pat.valid_mask(T, K)
        assert torch.equal(seq[0] != PAD, valid)
        assert int(valid.sum()) == K * T


@pytest.mark.parametrize("K", range(1, 9))
def test_delay_places_stream_k_k_frames_late(K):
    pat = DelayPattern()
    T = 5
    codes = _codes(1, K, T)
    seq = pat.build(codes)
    assert seq.shape[1] == T + K - 1
    for k in range(K):
        assert torch.equal(seq[0, k : k + T, k], codes[0, k])
        assert bool((seq[0, :k, k] == PAD).all()) and bool((seq[0, k + T :, k] == PAD).all())


def test_parallel_is_identity_transposed():
    codes = _codes(3, 4, 6)
    seq = ParallelPattern().build(codes)
    assert seq.shape == (3, 6, 4)
    assert torch.equal(seq, codes.transpose(1, 2))


def test_delay_incomplete_tail_raises_or_truncates():
    pat = DelayPattern()
    K, T = 4, 6
    codes = _codes(2, K, T)
    seq = pat.build(codes)
    cut = seq[:, : T + 1]  # generation stopped 2 positions before the tail finished
    with pytest.raises(PatternError, match="incomplete delayed tail.*pass truncate=True"):
        pat.revert(cut)
    got = pat.revert(cut, truncate=True)
    assert torch.equal(got, codes[:, :, : T + 1 - (K - 1)])
    # a complete sequence gives the same with or without truncate
    assert torch.equal(pat.revert(seq, truncate=True), codes)
    # shorter than the delay: no complete frame
    with pytest.raises(PatternError, match="holds no complete frame"):
        pat.revert(seq[:, : K - 1])
    assert pat.revert(seq[:, : K - 1], truncate=True).shape == (2, K, 0)


def test_revert_checks_pad_placement():
    pat = DelayPattern()
    seq = pat.build(_codes(1, 3, 4))
    bad = seq.clone()
    bad[0, 0, 2] = 5  # stream 2 has a code before its start
    with pytest.raises(PatternError, match="stream 2 holds a code at position 0, before the stream starts at position 2"):
        pat.revert(bad)
    bad = seq.clone()
    bad[0, 2, 1] = PAD  # a hole inside stream 1
    with pytest.raises(PatternError, match="stream 1 holds pad at position 2 where frame 1 must be a code"):
        pat.revert(bad)
    with pytest.raises(PatternError, match=r"seq must be \[B,S,K\]"):
        pat.revert(seq[0])
    with pytest.raises(PatternError, match=r"codes must be \[B,K,T\]"):
        pat.build(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(PatternError, match="integers"):
        pat.build(torch.zeros(1, 3, 4))


def test_pad_id_for_local_codes():
    pat = DelayPattern(pad_id=16)
    codes = torch.randint(0, 16, (2, 3, 5))
    codes[0, 0, 0] = 0
    seq = pat.build(codes)
    assert int(seq[0, 0, 1]) == 16
    assert torch.equal(pat.revert(seq), codes)


def test_registry_is_class_choices():
    assert set(pattern_choices.choices()) == {"delay", "parallel"}
    assert pattern_choices.default == "delay"
    parser = argparse.ArgumentParser()
    pattern_choices.add_arguments(parser)
    args = parser.parse_args(["--pattern", "parallel", "--pattern_conf", "pad_id=7"])
    obj = pattern_choices.get_class(args.pattern)(**args.pattern_conf)
    assert isinstance(obj, ParallelPattern) and isinstance(obj, AbsPattern) and obj.pad_id == 7
    with pytest.raises(ValueError, match="must be one of"):
        build_pattern("zigzag")
