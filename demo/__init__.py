"""The clinician app: Gradio layout (`layout.py`) and event handlers (`handlers.py`) over the core."""
