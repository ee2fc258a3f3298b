"""Biomed-DPT Studio core: everything that is not user interface. Never imports gradio."""
