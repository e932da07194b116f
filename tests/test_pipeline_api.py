"""The steps of a `pipeline("next-item")` call as public methods, for callers that batch histories themselves.

``call_parameters``, ``prepare``, ``score`` and ``finish`` must give exactly what a call gives, and what
they refuse must say which field (and which history) is at fault, so that the HTTP service can point
at it without reading the message.
"""

from __future__ import annotations

import warnings

import pytest

import hf_seqrec  # noqa: F401  (registers the "next-item" task)
from hf_seqrec.pipelines import RequestError, RequestTypeError, RequestValueError
from testing_utils import numbered_catalog, save_tiny_lm_checkpoint

MAX_LEN = 8
NUM_ITEMS = 30

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny checkpoint with popularity counts; `recommend` (conftest.py) is its pipeline."""
    return save_tiny_lm_checkpoint(
        tmp_path_factory.mktemp("api-checkpoint"), numbered_catalog(NUM_ITEMS), max_len=MAX_LEN, popularity=[[0, 4, 4, 9]]
    )


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def steps(recommend, histories, **params):
    """The recommendations of `histories` through the public steps, in one forward pass."""
    prepared = recommend.prepare(histories, recommend.call_parameters(**params))
    return [recommend.finish(row, history) for row, history in zip(recommend.score(prepared), prepared)]


def refusal(call) -> RequestError:
    with pytest.raises(RequestError) as caught:
        quietly(call)
    return caught.value


# ----------------------------------------------------------------------------- same results as a call
def test_the_steps_give_what_a_call_gives(recommend):
    histories = [
        {"history": ["1", "2", "3"]},
        {"history": [str(i) for i in range(1, 20)]},  # longer than max_len
        {"history_text": ["Film number 4 (1974)", "film number 5"]},
        {"history": ["5", "3", "9"], "timestamps": [30, 10, "1970-01-01T00:00:20"]},
        {"history": []},  # the popularity fallback, in the same batch
    ]
    params = {"top_k": 4, "fallback": "popular", "candidates": [str(i) for i in range(1, 25)]}
    assert quietly(steps, recommend, histories, **params) == quietly(recommend, histories, **params)


def test_histories_prepared_with_different_parameters_share_a_forward_pass(recommend):
    first = recommend.prepare([{"history": ["1", "2"]}], recommend.call_parameters(top_k=2))
    second = recommend.prepare([{"history": ["7"]}], recommend.call_parameters(top_k=3, exclude_seen=False, return_scores=False))
    scores = recommend.score(first + second)
    assert scores.shape == (2, NUM_ITEMS)
    got = [recommend.finish(scores[0], first[0]), recommend.finish(scores[1], second[0])]
    want = [recommend({"history": ["1", "2"]}, top_k=2), recommend({"history": ["7"]}, top_k=3, exclude_seen=False, return_scores=False)]
    assert [[r["item_id"] for r in result] for result in got] == [[r["item_id"] for r in result] for result in want]
    assert [r["score"] for r in got[0]] == pytest.approx([r["score"] for r in want[0]], rel=1e-5, abs=1e-5)
    assert all("score" not in r for r in got[1])


def test_parameters_given_when_the_pipeline_was_built_apply_unless_a_call_overrides_them(model):
    from transformers import pipeline

    recommend = pipeline("next-item", model=model, top_k=2)
    assert recommend.call_parameters().postprocess["top_k"] == 2
    assert recommend.call_parameters(top_k=5).postprocess["top_k"] == 5


# ----------------------------------------------------------------------------- refusals name their field
@pytest.mark.parametrize(
    "params, field, kind",
    [
        ({"top_k": 0}, "top_k", ValueError),
        ({"exclude_seen": "no"}, "exclude_seen", TypeError),
        ({"return_scores": 1}, "return_scores", TypeError),
        ({"candidates": "1"}, "candidates", TypeError),
        ({"candidates": ["zz"]}, "candidates", ValueError),
        ({"candidates": [None]}, "candidates", TypeError),  # the catalogue's own id check
        ({"fallback": "random"}, "fallback", ValueError),
        ({"explain": "yes"}, "explain", TypeError),
        ({"explain": True, "explain_method": "magic"}, "explain_method", ValueError),
        ({"explain_baseline": "ones"}, "explain_baseline", ValueError),
        ({"explain_steps": 1}, "explain_steps", ValueError),
        ({"top_k": 3, "topk": 3, "exclude": True}, "topk", TypeError),  # the first unknown one
        ({"precision": "int8"}, "precision", TypeError),
    ],
)
def test_a_refused_parameter_names_itself(recommend, params, field, kind):
    error = refusal(lambda: recommend.call_parameters(**params))
    assert (error.field, error.index) == (field, None)
    assert isinstance(error, kind) and isinstance(error, RequestTypeError if kind is TypeError else RequestValueError)
    with pytest.raises(kind) as called:
        quietly(recommend, {"history": ["1"]}, **params)
    assert str(called.value) == str(error)  # the message of a call, unchanged


@pytest.mark.parametrize(
    "history, field, kind",
    [
        ({"history": "12"}, "history", TypeError),
        ({"history": [None]}, "history", TypeError),  # the catalogue's own id check
        ({"history": []}, "history", ValueError),
        ({"history": ["998", "999"]}, "history", ValueError),  # no known item
        ({"history_text": [3]}, "history_text", TypeError),
        ({"history_text": ["no such film"]}, "history_text", ValueError),
        ({"history": ["1"], "history_text": ["x"]}, "history_text", ValueError),
        ({"items": ["1"]}, "items", ValueError),
        ({"history": ["1", "2"], "timestamps": [1]}, "timestamps", ValueError),
        ({"history": ["1"], "timestamps": "1"}, "timestamps", TypeError),
        ({"history": ["1"], "timestamps": ["yesterday"]}, "timestamps", ValueError),
        ({"history": ["1"], "timestamps": [True]}, "timestamps", TypeError),
    ],
)
def test_a_refused_history_names_its_field_and_position(recommend, history, field, kind):
    inputs = [{"history": ["1"]}, {"history": ["2"]}, history]
    error = refusal(lambda: recommend.prepare(inputs, start=10))
    assert (error.field, error.index) == (field, 12)
    assert isinstance(error, kind)
    with pytest.raises(kind) as called:
        quietly(recommend, history)
    assert str(called.value) == str(error)


def test_an_element_that_is_not_a_history_is_refused_as_a_whole(recommend):
    error = refusal(lambda: recommend.prepare([{"history": ["1"]}, ["2"]]))
    assert (error.field, error.index) == (None, 1) and isinstance(error, TypeError)
    assert "every element of a batch must be a dict" in str(error)


def test_an_explanation_the_model_cannot_give_names_explain_method(recommend, monkeypatch):
    # Occlusion of a one-item history feeds an input vector, which only input_mode="id" takes.
    [prepared] = recommend.prepare([{"history": ["1"]}], recommend.call_parameters(explain=True, top_k=2))
    scores = recommend.score([prepared])
    monkeypatch.setattr(recommend.model.config, "input_mode", "text")
    error = refusal(lambda: recommend.finish(scores[0], prepared))
    assert error.field == "explain_method" and isinstance(error, ValueError) and "input_mode='id'" in str(error)


def test_the_service_points_at_a_parameter_only_where_the_request_gave_it(recommend, monkeypatch):
    pytest.importorskip("fastapi")
    from hf_seqrec.serving.engine import RecommendEngine, RecommendJob

    monkeypatch.setattr(recommend.model.config, "input_mode", "text")
    engine = RecommendEngine(recommend)
    history = [{"history": ["1"]}]
    given, left_out = engine.run(
        [RecommendJob(history, {"explain": True, "explain_method": "occlusion"}), RecommendJob(history, {"explain": True})]
    )
    assert given.error.field == ("explain_method",) and left_out.error.field == ()
    assert given.error.kind == left_out.error.kind == "value_error"


# ----------------------------------------------------------------------------- the padded batch
def test_explanations_pad_histories_as_the_pipeline_does():
    from hf_seqrec.modeling import explain, padding

    assert explain.pad_histories is padding.pad_histories
    ids, mask = padding.pad_histories([[3, 1], [2]])
    assert ids.tolist() == [[3, 1], [2, 0]] and mask.tolist() == [[1, 1], [1, 0]]
