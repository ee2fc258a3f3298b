"""The page's `gr.Blocks`, safe while a session's cards are redrawn.

A `gr.render` (the class cards, the pool's suggestions) runs in a worker thread and adds and
drops event listeners in its session's `blocks_config.fns` as it draws. Meanwhile every other
event of that session that outputs a `gr.State` reads the same dict to find which states have a
change listener (`Blocks.get_state_ids_to_track`), and gradio 6.31 walks the live dict: a click
on **Tune prompts** while the cards redraw failed with "dictionary changed size during
iteration". Here that walk reads a copy, taken in one step (`dict.copy` holds the interpreter
lock throughout).
"""
from __future__ import annotations

import gradio as gr
from gradio import utils


class StudioBlocks(gr.Blocks):
    def get_state_ids_to_track(self, block_fn, state):
        """`gr.Blocks.get_state_ids_to_track`, over a copy of the session's listeners."""
        if state is None:
            return [], []
        fns = state.blocks_config.fns.copy().values()
        watched = {block_id for fn in fns for block_id, event in fn.targets
                   if event == "change"}
        ids, hashes = [], []
        for block in block_fn.outputs:
            if block.stateful and block._id in watched:
                ids.append(block._id)
                hashes.append(utils.deep_hash(state[block._id]))
        return ids, hashes
