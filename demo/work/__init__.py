"""One user's work as values with owners, and no Gradio: the task, labelled scans, their features,
tuned prompts, predictions, evaluations and reports; `session.Session` composes them."""
