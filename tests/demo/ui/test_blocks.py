"""The page's Blocks reads a session's listeners safely while a render changes them."""
import gradio as gr
import pytest
from gradio.state_holder import SessionState

from demo.ui.blocks import StudioBlocks


class _Redrawing:
    """A listener whose targets, once read, make the session gain another listener: what a
    `gr.render` drawing in its worker thread does between two steps of a walk over them."""

    def __init__(self, fns: dict, targets):
        self.fns, self._targets = fns, targets

    @property
    def targets(self):
        self.fns[max(self.fns) + 1] = _Redrawing(self.fns, [])
        return self._targets


def _page(blocks_class):
    with blocks_class() as page:
        watched = gr.State(1)
        unwatched = gr.State(2)
        shown = gr.Number()
        button = gr.Button()
        button.click(lambda: (2, 3), None, [watched, unwatched])
        watched.change(lambda v: v, watched, shown)
    state = SessionState(page)
    fns = state.blocks_config.fns
    first = min(fns)
    fns[first] = _Redrawing(fns, fns[first].targets)
    click = next(fn for fn in page.fns.values() if fn.outputs and len(fn.outputs) == 2)
    return page, state, click, watched, unwatched


def test_gradio_alone_fails_while_a_render_draws():
    page, state, click, *_ = _page(gr.Blocks)
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        page.get_state_ids_to_track(click, state)


def test_the_studio_page_finds_the_watched_state_while_a_render_draws():
    page, state, click, watched, unwatched = _page(StudioBlocks)
    state[watched._id] = 5
    ids, hashes = page.get_state_ids_to_track(click, state)
    assert ids == [watched._id]  # the state with a change listener, not the other
    assert len(hashes) == 1
    state[watched._id] = 6  # the hash follows the value, as gradio's own does
    assert page.get_state_ids_to_track(click, state)[1] != hashes
    assert page.get_state_ids_to_track(click, None) == ([], [])
