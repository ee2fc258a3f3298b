"""The unlabelled pool (demo/work/pool.py): read like examples, ranked with the tiny model's
real probabilities and features, labelled one scan at a time; never used before it is
labelled."""
from __future__ import annotations

import pytest
import torch

from core.active import margins
from demo.text.messages import UserError
from demo.work.session import Session
from tests.demo.conftest import CT_FILES, MR_FILES, ROWS, real_scan

POOL_FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb.dcm", "US1_J2KR.dcm",
              "RG1_J2KR.dcm", "RG3_J2KR.dcm", "OBXXXX1A.dcm", "liver.dcm", "emri_small.dcm"]


def with_examples(studio, tmp_path) -> Session:
    session = Session()
    studio.set_task(session, "other", None, "a {} photo.", ROWS, 12.5, 0.25)
    for (label, _), names in zip(ROWS, (CT_FILES, MR_FILES)):
        studio.add_examples(session, [real_scan(n, tmp_path) for n in names], label, "auto")
    return session


def pooled(session, tmp_path, names=POOL_FILES):
    files = [(real_scan(n, tmp_path), f"`{n}`") for n in names]
    return session.add_to_pool(files)


def test_the_pool_is_read_like_examples_and_skips_what_is_there(studio, tmp_path):
    session = with_examples(studio, tmp_path)
    added, problems = pooled(session, tmp_path)
    # CT_small and MR_small are examples already: skipped, said by name
    assert added == len(POOL_FILES) - 2 and len(session.pool) == added
    assert {p.where for p in problems} == {"`CT_small.dcm`", "`MR_small.dcm`"}
    assert all(e.label == "" and e.name.startswith("unlabelled #") for e in session.pool)
    again, problems = pooled(session, tmp_path, ["JPEG2000.dcm"])
    assert again == 0 and "the same picture as unlabelled #" in problems[0].error.text("en")
    with pytest.raises(UserError) as err:
        Session().add_to_pool([])
    assert err.value.key == "need_task"


def test_suggestions_before_tuning_are_zero_shot_ranked_by_what_they_teach(studio, tmp_path):
    session = with_examples(studio, tmp_path)
    pooled(session, tmp_path)
    info = studio.model_info()
    ranked = session.suggestions(info, k=4)
    assert len(ranked) == 4 and {s.classifier for s in ranked} == {"zero-shot"}
    assert len({s.example.uid for s in ranked}) == 4
    plain = session.features_of(info, session.pool, 0)
    zero = session.zero_shot(info).proba(plain)
    probe = torch.from_numpy(session.baseline(info).predict_proba(plain)).float()
    score = (1 - margins(zero)) + 0.5 * (0.5 * (zero - probe).abs().sum(dim=1))
    first = session.pool.index(ranked[0].example)
    assert first == int(score.argmax())  # the most uncertain comes first
    for s in ranked:
        i = session.pool.index(s.example)
        assert s.guess == ROWS[int(zero[i].argmax())][0]
        assert s.probability == pytest.approx(float(zero[i].max()), abs=1e-6)
        assert s.reason in ("unsure", "disagree")
        if s.reason == "disagree":
            assert s.disagreeing == "linear-probe" and s.disagreeing_guess != s.guess
    shuffled = session.suggestions(info, "random", k=4, seed=1)
    assert {s.reason for s in shuffled} == {"random"}
    assert [s.example.uid for s in shuffled] == [s.example.uid for s in session.suggestions(
        info, "random", k=4, seed=1)]
    with pytest.raises(UserError) as err:
        session.suggestions(info, "by-colour")
    assert err.value.key == "unknown_order"


def test_labelling_a_suggestion_moves_exactly_that_scan(studio, tmp_path):
    session = with_examples(studio, tmp_path)
    pooled(session, tmp_path)
    before_pool = [e.uid for e in session.pool]
    before_examples = list(session.examples)
    chosen = session.pool[2]
    example = session.label_pool_scan(chosen.uid, ROWS[1][0])
    assert [e.uid for e in session.pool] == [u for u in before_pool if u != chosen.uid]
    assert session.examples[:-1] == before_examples and session.examples[-1] is example
    assert example.label == ROWS[1][0] and example.digest == chosen.digest
    assert example.name == f"{ROWS[1][0]} #{len(MR_FILES) + 1}"
    with pytest.raises(UserError) as err:
        session.label_pool_scan(chosen.uid, ROWS[0][0])  # it is no longer in the pool
    assert err.value.key == "pool_scan_gone"
    with pytest.raises(UserError) as err:
        session.label_pool_scan(session.pool[0].uid, "bone")
    assert err.value.key == "choose_class" and len(session.pool) == len(before_pool) - 1


def test_pool_scans_never_reach_tuning_the_estimate_or_evaluation(studio, tmp_path):
    session = with_examples(studio, tmp_path)
    pooled(session, tmp_path)
    pool = {e.digest for e in session.pool}
    examples, labels = session.training_set()
    assert not pool & {e.digest for e in examples} and len(examples) == len(labels) == 6
    assert not pool & {e.digest for e in session.test_set}
    # the estimate's folds and the baselines take the same training set: 6 examples
    assert session.counts() == {ROWS[0][0]: 3, ROWS[1][0]: 3}


def test_after_tuning_the_guesses_are_the_tuned_prompts(studio, tmp_path):
    from tests.demo.ui.test_handlers import tuned

    session = with_examples(studio, tmp_path)
    tuned(studio, session, "fast", 12.5, 0.25, 10, 1, 1, estimate=False)
    pooled(session, tmp_path)
    info = studio.model_info()
    ranked = session.suggestions(info, k=3)
    assert {s.classifier for s in ranked} == {"tuned"}
    vp = session.tuned.cfg.n_vision_prompts
    seen = session.features_of(info, session.pool, vp)
    probs = session.tuned.proba(seen)
    i = session.pool.index(ranked[0].example)
    assert ranked[0].probability == pytest.approx(float(probs[i].max()), abs=1e-6)
    assert all(s.disagreeing in (None, "linear-probe", "zero-shot") for s in ranked)
