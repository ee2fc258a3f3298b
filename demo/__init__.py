"""The clinician app, in four layers; each imports only from the layers listed before it:

- `demo.text`: what the page says, in English and Korean (no other module of the app);
- `demo.runtime`: the model host, compute calls, the GPU boundary, queues, runs and storage;
- `demo.work`: one user's work as values (task, labelled scans, features, tuned prompts,
  evaluation, prediction, report), composed by `demo.work.session.Session`; no Gradio;
- `demo.ui`: the page (tab builders, wiring, handlers by step, typed replies) and the tools.
"""
