"""Task templates: exact token matrices, loss masks, spans, CFG unconditional form, errors."""
import numpy as np
import pytest

from ualm_tk.data.task_templates import (
    TASK_TEMPLATES,
    ExampleTooLong,
    Segment,
    TaskDataError,
    assistant_turn_start,
    make_prompt_segments,
    make_segments,
    prompt_fields_for_audio,
    make_unconditional,
    num_feat_frames,
    render_example,
    sequence_length,
    stream_weights,
)
from ualm_tk.patterns import build_pattern
from ualm_tk.tokens import specials as sp
from ualm_tk.tokens.layout import TokenLayout

K, N = 3, 4
LAYOUT = TokenLayout(["x", "y", "z"], num_codebooks=K, codebook_size=N)  # text 256..258, audio_k at 259+4k
A0, A1, A2 = LAYOUT.stream_start(0), LAYOUT.stream_start(1), LAYOUT.stream_start(2)
CODES = {"ark:1": np.array([[0, 1], [2, 3], [1, 1]])}  # [K,T] local codes, T = 2
P, BOS, EOS, EOT, USR, AST, TXT, AUD, FEAT = (
    sp.PAD, sp.BOS, sp.EOS, sp.EOT, sp.USER, sp.ASSISTANT, sp.TEXT, sp.AUDIO, sp.AUDIO_FEATS)


def encode(text, what):
    if not text.strip():
        raise TaskDataError(f"key 'k': empty {what}")
    return LAYOUT.text_to_global(["xyz".index(c) for c in text])


def render(task, ex, pattern="delay", **kw):
    segs = make_segments(task, {"key": "k", **ex}, encode)
    return render_example(segs, LAYOUT, build_pattern(pattern), CODES.get, key="k", **kw)


CAP = {"text": "xy", "codes": "ark:1", "num_frames": 2}
FEATS = {"wav": "a.wav", "num_samples": 16000, "sample_rate": 16000, "num_feat_frames": 3}


def test_caption_to_audio_exact_matrix_delay():
    r = render("caption_to_audio", CAP)
    expect = np.array([
        # bos <user> <text> x  y  <eos> <assistant> <audio> f0 f1 <eos> tail
        [BOS, USR, TXT, 256, 257, EOS, AST, AUD, A0 + 0, A0 + 1, EOS, P],
        [P, P, P, P, P, P, P, P, P, A1 + 2, A1 + 3, P],
        [P, P, P, P, P, P, P, P, P, P, A2 + 1, A2 + 1],
    ]).T
    np.testing.assert_array_equal(r.tokens, expect)
    w = 1 / K
    mask = np.zeros((12, K), np.float32)
    mask[8:10, 0] = w
    mask[9:11, 1] = w
    mask[10:12, 2] = w
    mask[10, 0] = 1.0  # closing token of the assistant segment
    np.testing.assert_allclose(r.loss_mask, mask)
    assert [(s.role, s.modality, s.start, s.end) for s in r.segments] == [
        ("user", "text", 1, 6), ("assistant", "audio", 6, 12)]
    assert r.segments[1].content_start == 8 and r.segments[1].content_end == 10
    # each frame costs one text token in total
    assert r.loss_mask[:, :].sum() == pytest.approx(2 * 1.0 + 1.0)
    assert r.has_condition and r.audio_feats == []


def test_caption_to_audio_parallel_and_weights():
    r = render("caption_to_audio", CAP, pattern="parallel", audio_weight=0.5)
    # parallel: S_audio = T, closing <eos> after the last frame
    assert r.tokens.shape == (11, K)
    np.testing.assert_array_equal(r.tokens[8:10], LAYOUT.audio_to_global(CODES["ark:1"], dim=0).T)
    assert r.tokens[10, 0] == EOS and r.loss_mask[10, 0] == 1.0
    np.testing.assert_allclose(r.loss_mask[8:10], 0.5)



def test_caption_to_audio_per_stream_weights_delay():
    # one weight per stream: each stream's code positions carry its own weight, pattern pads stay 0
    r = render("caption_to_audio", CAP, audio_weight=[0.6, 0.3, 0.1])
    expect = np.zeros((12, K), np.float32)
    expect[8:10, 0] = 0.6
    expect[9:11, 1] = 0.3
    expect[10:12, 2] = 0.1
    expect[10, 0] = 1.0  # the closing token keeps the text weight
    np.testing.assert_allclose(r.loss_mask, expect)
    # the same as the default when the list is 1/K everywhere
    np.testing.assert_allclose(render("caption_to_audio", CAP, audio_weight=[1 / K] * K).loss_mask,
                               render("caption_to_audio", CAP).loss_mask)


@pytest.mark.parametrize("bad,msg", [
    ([0.5, 0.5], "has 2 per-stream value"),
    ([0.5, -0.1, 0.6], "finite, >= 0"),
    ([0, 0, 0], "not all 0"),
    ([0.5, "a", 0.5], "must be a number"),
    ("0.5", "a number or a list"),
])
def test_stream_weights_errors(bad, msg):
    with pytest.raises(TaskDataError, match=msg):
        stream_weights(bad, K)
    with pytest.raises(TaskDataError, match=msg):
        render("caption_to_audio", CAP, audio_weight=bad)

@pytest.mark.parametrize("pattern", ["delay", "parallel"])
@pytest.mark.parametrize("task,ex", [
    ("caption_to_audio", CAP),
    ("audio_to_caption", {"text": "zz", **FEATS}),
    ("audio_qa", {"question": "xyz", "answer": "y", **FEATS}),
    ("text_only", {"question": "xy", "answer": "zzx"}),
])
def test_every_template_structure(task, ex, pattern):
    pat = build_pattern(pattern)
    segs = make_segments(task, {"key": "k", **ex}, encode)
    r = render_example(segs, LAYOUT, pat, CODES.get, key="k")
    assert r.tokens.shape == (sequence_length(segs, pat, K), K)
    assert r.tokens[0, 0] == BOS
    # text and specials only in stream 0 outside audio segments
    audio = np.zeros(r.length, bool)
    for s in r.segments:
        if s.modality == "audio":
            audio[s.content_start:s.end] = True
        assert r.tokens[s.start, 0] == sp.ROLE_IDS[s.role]
        assert r.tokens[s.end - 1, 0] in (EOS, EOT) or s.modality == "audio"
    assert (r.tokens[~audio, 1:] == P).all()
    assert LAYOUT.is_audio(r.tokens[~audio]).sum() == 0
    # loss only inside assistant segments
    inside = np.zeros(r.length, bool)
    for s in r.segments:
        if s.role == "assistant":
            inside[s.content_start:s.end] = True
    assert r.loss_mask[~inside].sum() == 0 and r.loss_mask[inside].sum() > 0


def test_audio_qa_user_turn_and_placeholders():
    r = render("audio_qa", {"question": "xyz", "answer": "y", **FEATS})
    s0 = r.tokens[:, 0]
    assert list(s0[:11]) == [BOS, USR, AUD, FEAT, FEAT, FEAT, EOT, USR, TXT, 256, 257]
    assert r.audio_feats[0].start == 3 and r.audio_feats[0].end == 6 and r.audio_feats[0].wav == "a.wav"
    # answer "y" + <eos> are the only trained positions, weight 1
    assert list(np.nonzero(r.loss_mask[:, 0])[0]) == [r.length - 2, r.length - 1]
    assert r.loss_mask.sum() == 2.0
    assert not r.has_condition


def test_num_feat_frames():
    assert num_feat_frames(16000, 16000) == 25
    assert num_feat_frames(16001, 16000) == 26
    assert num_feat_frames(8000 * 3, 8000, 25.0) == 75
    assert num_feat_frames(1, 16000) == 1


def test_unconditional_versions():
    r = render("caption_to_audio", CAP)
    u = make_unconditional(r)
    assert u.tokens.shape == r.tokens.shape
    np.testing.assert_array_equal(u.tokens[3:5], P)  # caption replaced
    np.testing.assert_array_equal(u.tokens[5:], r.tokens[5:])  # structure and audio kept
    np.testing.assert_array_equal(u.loss_mask, r.loss_mask)  # loss: audio segment only
    p = make_unconditional(r, scope="prefix")
    assert (p.tokens[:6] == P).all() and (p.tokens[6:] == r.tokens[6:]).all()
    with pytest.raises(TaskDataError, match="no condition segment"):
        make_unconditional(render("text_only", {"question": "x", "answer": "y"}))


def test_prompt_only_is_the_inference_prefix():
    segs = make_segments("caption_to_audio", {"key": "k", **CAP}, encode)
    pat = build_pattern("delay")
    prompt = render_example(segs, LAYOUT, pat, None, prompt_only=True)
    full = render_example(segs, LAYOUT, pat, CODES.get)
    np.testing.assert_array_equal(prompt.tokens, full.tokens[:8])
    assert prompt.loss_mask.sum() == 0
    u = make_unconditional(prompt)  # the CFG row at inference has the same length
    assert u.tokens.shape == prompt.tokens.shape and (u.tokens[3:5] == P).all()


@pytest.mark.parametrize("task,user,answer", [
    ("caption_to_audio", {"text": "xy"}, {"codes": "ark:1", "num_frames": 2}),
    ("audio_to_caption", FEATS, {"text": "zz"}),
    ("audio_qa", {"question": "xyz", **FEATS}, {"answer": "y"}),
    ("text_only", {"question": "xy"}, {"answer": "zzx"}),
])
def test_prompt_from_user_fields_is_prefix_of_training_example(task, user, answer):
    pat = build_pattern("delay")
    full = render(task, {**user, **answer})
    prompt = render_example(make_prompt_segments(task, user, encode), LAYOUT, pat, None, prompt_only=True)
    last = full.segments[-1]
    np.testing.assert_array_equal(prompt.tokens, full.tokens[: last.content_start])
    assert prompt.audio_feats == full.audio_feats
    with pytest.raises(TaskDataError, match="must not contain the answer"):
        make_prompt_segments(task, {**user, **answer}, encode)


def test_prompt_fields_for_audio():
    f = prompt_fields_for_audio("a.wav", 16000, 16000)
    assert f == {"wav": "a.wav", "num_samples": 16000, "sample_rate": 16000, "num_feat_frames": 25}


def test_task_marker_segment():
    segs = make_segments("text_only", {"key": "k", "question": "x", "answer": "y"}, encode, task_marker=True)
    r = render_example(segs, LAYOUT, build_pattern("delay"))
    assert list(r.tokens[:5, 0]) == [BOS, sp.SYSTEM, TXT, sp.task_marker("text_only"), EOS]


def test_errors_name_the_key():
    with pytest.raises(TaskDataError, match="unknown task 'dance'; known tasks: audio_qa, audio_qa_dialog, audio_to_caption, "
                                            "caption_to_audio, text_only"):
        make_segments("dance", {"key": "k"}, encode)
    with pytest.raises(TaskDataError, match="key 'k': empty caption"):
        render("caption_to_audio", {**CAP, "text": "  "})
    with pytest.raises(TaskDataError, match="key 'k': task caption_to_audio needs field 'codes' .*--codes_scp"):
        render("caption_to_audio", {"text": "x"})
    with pytest.raises(ExampleTooLong, match="key 'k': example has 12 positions, more than max_len=11"):
        render("caption_to_audio", CAP, max_len=11)
    bad = {"ark:1": np.array([[0, 1], [2, 3]])}
    segs = make_segments("caption_to_audio", {"key": "k", **CAP}, encode)
    with pytest.raises(TaskDataError, match=r"key 'k': codes ark:1 have shape \(2, 2\), expected \[K=3, T=2\]"):
        render_example(segs, LAYOUT, build_pattern("delay"), bad.get, key="k")
    with pytest.raises(TaskDataError, match="codes outside"):
        render_example(segs, LAYOUT, build_pattern("delay"), {"ark:1": CODES["ark:1"] + 3}.get, key="k")
    with pytest.raises(TaskDataError, match="pad_id must be <pad>"):
        render_example(segs, LAYOUT, build_pattern("delay", pad_id=5), CODES.get)


def test_segment_json_round_trip_and_validation():
    segs = make_segments("audio_qa", {"key": "k", "question": "x", "answer": "y", **FEATS}, encode)
    for s in segs:
        assert Segment.from_json(s.to_json()) == s
    with pytest.raises(TaskDataError, match="unknown role 'robot'"):
        Segment.from_json({"role": "robot", "modality": "text", "ids": [256]}, "f: key 'k'")
    with pytest.raises(TaskDataError, match="unknown segment field"):
        Segment.from_json({"role": "user", "modality": "text", "ids": [256], "colour": 1})


def test_registry_is_extensible():
    assert set(TASK_TEMPLATES) == {"caption_to_audio", "audio_to_caption", "audio_qa", "audio_qa_dialog", "text_only"}
    for name, tpl in TASK_TEMPLATES.items():
        assert tpl.source in ("clips", "qa", "qa_dialog", "text_only") and callable(tpl.build)


def test_text_only_with_solution_is_a_two_segment_assistant_turn():
    r = render("text_only", {"question": "xy", "solution": "zx", "answer": "y"})
    expect = [BOS, USR, TXT, 256, 257, EOS, AST, TXT, 258, 256, EOT, AST, TXT, 257, EOS]
    np.testing.assert_array_equal(r.tokens[:, 0], expect)
    assert (r.tokens[:, 1:] == P).all()
    # loss on both assistant segments: content and closing token (<eot>, then <eos>)
    mask = np.zeros(len(expect), np.float32)
    mask[[8, 9, 10, 13, 14]] = 1.0
    np.testing.assert_allclose(r.loss_mask[:, 0], mask)
    assert r.loss_mask[:, 1:].sum() == 0
    assert [(s.role, s.content_start, s.content_end) for s in r.segments] == [
        ("user", 3, 5), ("assistant", 8, 10), ("assistant", 13, 14)]
    # without a solution (absent or empty) the example is the one-segment answer as before
    plain = np.array([BOS, USR, TXT, 256, 257, EOS, AST, TXT, 257, EOS])
    for ex in ({"question": "xy", "answer": "y"}, {"question": "xy", "solution": "", "answer": "y"}):
        np.testing.assert_array_equal(render("text_only", ex).tokens[:, 0], plain)


def test_text_only_prompt_stops_before_the_solution():
    pat = build_pattern("delay")
    segs = make_prompt_segments("text_only", {"question": "xy"}, encode)
    prompt = render_example(segs, LAYOUT, pat, None, prompt_only=True)
    np.testing.assert_array_equal(prompt.tokens[:, 0], [BOS, USR, TXT, 256, 257, EOS, AST, TXT])
    assert prompt.loss_mask.sum() == 0
    # the stored training example (solution + answer) gives the same inference prefix
    full = make_segments("text_only", {"key": "k", "question": "xy", "solution": "zx", "answer": "y"}, encode)
    np.testing.assert_array_equal(render_example(full, LAYOUT, pat, None, prompt_only=True).tokens, prompt.tokens)
    for given in ({"solution": "zx"}, {"answer": "y"}):
        with pytest.raises(TaskDataError, match="must not contain the answer"):
            make_prompt_segments("text_only", {"question": "xy", **given}, encode)


def test_assistant_turn_start_is_the_trailing_assistant_run():
    u, a = Segment("user", "text", ids=[256]), Segment("assistant", "text", ids=[257])
    assert assistant_turn_start([u, a]) == 1
    assert assistant_turn_start([u, a, u, a, a, a]) == 3  # earlier turns do not count
    with pytest.raises(TaskDataError, match="key 'k7': the segments do not end with an assistant segment"):
        assistant_turn_start([a, u], "k7")
