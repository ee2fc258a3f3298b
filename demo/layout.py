"""The app's layout: six steps as tabs, wired to `Studio` handlers.

Queues: tuning runs take turns in their own line (`TuningLine`, each waiting user told their
place), the encoding of examples as they arrive has its own ("encode"), and so do reports
("report", made after the prediction they describe is on screen), so prediction, maps, evaluation
and reading examples ("infer") never wait behind another user's tuning, encoding or report; on a
CPU, background work also gives way to them between steps (`demo.traffic`). The Stop button and
light events bypass the queue.
"""
from __future__ import annotations

import argparse

import gradio as gr

from core import presets
from core.overlay import colorbar
from demo import gpu, storage, tools
from demo.handlers import AUTO_WINDOW, MANUAL_WINDOW, Studio, window_choices
from demo.strings import EN, KO

I18N = gr.I18n(en=EN, ko=KO)
QUEUE_SIZE = 16
TUNING_SESSIONS = 8  # tuning generators alive at once: one runs, the others report their place
INFER_CONCURRENCY = 2
ENCODE_CONCURRENCY = 1  # encoding examples as they arrive: its own line, never before predictions
REPORT_CONCURRENCY = 1  # reports, made after their prediction is shown: never before predictions
MAX_UPLOAD = "200mb"
TIME_BUDGET_S = 300.0
ZEROGPU_TIME_BUDGET_S = 90.0  # plus the worker's start: within what ZeroGPU lends per call
CSS = """
.disclaimer {border-left: 4px solid #c33; padding-left: 10px;}
.privacy {border-left: 4px solid #37a; padding-left: 10px; font-size: 0.92em;}
#class-table td, #class-table th {white-space: pre-wrap !important; vertical-align: top;}
.card-gallery .thumbnail-item, .card-gallery button {max-width: 140px; max-height: 140px;}
.class-card {border: 1px solid #d5d9e6; border-radius: 8px; padding: 6px 10px; margin-top: 8px;}
"""


def t(key: str):
    return I18N(key)


def _window_controls(prefix: str):
    """Window choice (CT presets only on CT tasks), manual level and width, frame or slice."""
    with gr.Row():
        window = gr.Dropdown(window_choices("en", "MRI"), value=AUTO_WINDOW, label=t("window"),
                             elem_id=f"{prefix}-window")
        level = gr.Number(40, label=t("level"), visible=False, elem_id=f"{prefix}-level")
        width = gr.Number(400, label=t("width"), visible=False, minimum=0,
                          elem_id=f"{prefix}-width")
        index = gr.Number(-1, precision=0, label=t("slice"), elem_id=f"{prefix}-slice")
    manual = (lambda choice: tuple(gr.update(visible=choice == MANUAL_WINDOW) for _ in range(2)))
    window.change(manual, window, [level, width], queue=False, api_visibility="private")
    return window, level, width, index


def _bump(n):
    return (n or 0) + 1


def _class_card(studio: Studio, i: int, card: dict, session, status, counts, gallery, rev,
                view, features_status) -> None:
    """One class: its name, descriptions and count, its thumbnails (click one, then remove
    it), and an upload area that adds scans to this class."""
    name = card["name"]
    with gr.Group(elem_classes="class-card", elem_id=f"card-{i}"):
        lines = card["descriptions"][:3]
        more = " …" if len(card["descriptions"]) > 3 else ""
        gr.Markdown(f"### {name} · {len(card['thumbnails'])}\n"
                    + ("\n".join(f"- {line}" for line in lines) + more if lines else ""),
                    elem_id=f"card-{i}-title")
        pictures = gr.Gallery(card["thumbnails"], columns=8, height=190, fit_columns=False,
                              object_fit="contain", allow_preview=False, show_label=False,
                              elem_id=f"card-{i}-gallery", elem_classes="card-gallery")
        with gr.Row():
            upload = gr.File(file_count="multiple", type="filepath", label=t("card_upload"),
                             elem_id=f"card-{i}-files", height=110, scale=3)
            remove = gr.Button(t("remove_selected"), elem_id=f"card-{i}-remove", scale=1)

    def select(current, event: gr.SelectData, request: gr.Request = None):
        return studio.select_in_class(current, name, event.index, request)

    def add(current, files, window, level, width, index, request: gr.Request = None):
        return studio.add_examples(current, files, name, window, level, width, index, request)

    pictures.select(select, session, [session, status], queue=False, api_visibility="private")
    upload.upload(add, [session, upload, *view], [session, upload, status, gallery, counts],
                  concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY,
                  api_visibility="private").then(_bump, rev, rev, queue=False,
                                                 api_visibility="private").then(
        studio.prepare_features, session, [session, features_status], concurrency_id="encode",
        concurrency_limit=ENCODE_CONCURRENCY, api_visibility="private")
    remove.click(studio.remove_selected, session, [session, status, gallery, counts],
                 api_visibility="private").then(_bump, rev, rev, queue=False,
                                                api_visibility="private")


def build_demo(studio: Studio, mcp: bool = False) -> gr.Blocks:
    """The page, the step endpoints (one browser or `gradio_client` session each), and the
    stateless tools. With `mcp`, only the tools are documented, and so only they are MCP tools
    (a tool's `gr.State` would be reset at every call); the step endpoints stay callable."""
    modalities = presets.load_modalities()
    tasks = presets.load_tasks()
    first = presets.modality("MRI")
    first_organ = first.organs[0] if first.organs else None

    with gr.Blocks(title="Biomed-DPT Studio",
                   delete_cache=(storage.SWEEP_EVERY_S, storage.MAX_AGE_S)) as demo:
        # Each browser session's Session is made by its first event (after the model load).
        session = gr.State(None, delete_callback=studio.forget)
        gr.Markdown(f"# {EN['title']}")
        gr.Markdown(t("intro"))
        gr.Markdown(t("disclaimer"), elem_classes="disclaimer")
        gr.Markdown(t("privacy"), elem_classes="privacy", elem_id="privacy")
        status = gr.Markdown(studio.status(), elem_id="model-status")
        with gr.Row(visible=False) as model_actions:
            retry = gr.Button(t("retry_model"), size="sm")
            use_demo = gr.Button(t("use_demo_model"), size="sm", variant="secondary")
        poll = gr.Timer(1.0, active=not studio.ready)

        with gr.Tab(t("tab_task")):
            with gr.Row(equal_height=True):
                samples = gr.Dropdown([(s.title, s.id) for s in presets.load_samples()],
                                      label=t("samples"), info=t("samples_info"), scale=3,
                                      elem_id="sample-set")
                use_samples = gr.Button(t("use_samples"), variant="secondary", scale=1,
                                        elem_id="use-samples")
            preset = gr.Dropdown([(task.title, task.id) for task in tasks], value=None,
                                 label=t("preset"), info=t("preset_info"))
            with gr.Row():
                modality = gr.Dropdown([(m.name, m.id) for m in modalities], value=first.id,
                                       label=t("modality"))
                organ = gr.Dropdown(list(first.organs), value=first_organ, label=t("organ"),
                                    allow_custom_value=True)
            template = gr.Textbox(presets.template_for(first.id, first_organ), label=t("template"))
            table = gr.Dataframe(headers=[EN["class_name"], EN["class_descriptions"]],
                                 datatype=["str", "markdown"], column_count=(2, "fixed"),
                                 line_breaks=True,
                                 row_count=(4, "dynamic"), type="array", wrap=True,
                                 column_widths=["22%", "78%"], max_height=520,
                                 value=[["", ""]] * 4, label=t("classes"), interactive=True,
                                 elem_id="class-table")
            apply = gr.Button(t("apply_task"), variant="primary")
            task_status = gr.Markdown(elem_id="task-status")

        with gr.Tab(t("tab_examples")):
            example_class = gr.Dropdown([], label=t("example_class"), elem_id="example-class")
            window, level, width, index = _window_controls("example")
            with gr.Row():
                files = gr.File(file_count="multiple", type="filepath", label=t("upload_examples"),
                                elem_id="example-files", scale=2)
                with gr.Column(scale=1):
                    preview = gr.Image(type="filepath", label=t("scan_preview"), interactive=False,
                                       height=224, elem_id="example-preview")
                    frame = gr.Slider(0, 1, value=0, step=1, label=t("frame_slider"),
                                      visible=False, elem_id="example-frame")
                    preview_text = gr.Markdown(elem_id="example-preview-text")
            add = gr.Button(t("add_examples"), variant="primary")
            example_status = gr.Markdown(elem_id="example-status")
            features_status = gr.Markdown(elem_id="features-status")
            counts = gr.Markdown(elem_id="example-counts")
            # every example, for the API; the page shows them as one card per class below
            gallery = gr.Gallery(label=t("gallery"), visible=False, elem_id="example-gallery")
            remove = gr.Button(visible=False)  # the API's /remove_selected; cards have their own
            cards_rev = gr.Number(0, visible=False)  # bumped whenever the examples change

            @gr.render(inputs=[session], triggers=[cards_rev.change, demo.load])
            def class_cards(current):
                cards = studio.class_cards(current)
                if not cards:
                    gr.Markdown(t("cards_empty"))
                for i, card in enumerate(cards):
                    _class_card(studio, i, card, session, example_status, counts, gallery,
                                cards_rev, [window, level, width, index], features_status)

        with gr.Tab(t("tab_tune")):
            recipe = gr.Radio(["fast", "paper"], value="fast", label=t("recipe"), info=t("recipe_info"))
            with gr.Accordion(t("advanced"), open=False):
                with gr.Row():
                    lambda_l1 = gr.Number(first.lambda_l1, label=t("lambda_l1"), minimum=0)
                    lambda_kl = gr.Number(first.lambda_kl, label=t("lambda_kl"), minimum=0)
                with gr.Row():
                    steps = gr.Number(100, precision=0, minimum=1, maximum=2000, label=t("steps"))
                    epochs = gr.Number(100, precision=0, minimum=1, maximum=200, label=t("epochs"))
                    seed = gr.Number(1, precision=0, label=t("seed"))
            with gr.Row():
                tune = gr.Button(t("tune"), variant="primary")
                stop = gr.Button(t("stop"), variant="stop")
            tune_status = gr.Markdown(elem_id="tune-status")
            curve = gr.Plot(label=t("progress"), elem_id="training-curve", format="png")

        with gr.Tab(t("tab_predict")):
            with gr.Row():
                with gr.Column(scale=2):
                    scan = gr.File(type="filepath", label=t("predict_upload"),
                                   elem_id="predict-scan")
                    predict_window, predict_level, predict_width, predict_index = \
                        _window_controls("predict")
                    predict = gr.Button(t("predict"), variant="primary")
                    predict_status = gr.Markdown(elem_id="predict-status")
                with gr.Column(scale=3):
                    with gr.Row():
                        scan_view = gr.Image(type="filepath", label=t("scan_view"), interactive=False,
                                             height=300, elem_id="scan-view", buttons=[])
                        heat = gr.Image(type="filepath", label=t("map"), interactive=False,
                                        height=300, elem_id="attention-map", buttons=[])
                    legend = gr.Image(colorbar(width=360), show_label=False, interactive=False,
                                      container=False, height=44, buttons=[], elem_id="legend")
                    with gr.Row():
                        map_class = gr.Dropdown([], label=t("map_class"), elem_id="map-class")
                        cmap = gr.Radio(["jet", "cividis"], value="jet", label=t("colour_map"),
                                        elem_id="colour-map")
                    alpha = gr.Slider(0, 1, value=0.45, step=0.05, label=t("opacity"),
                                      elem_id="opacity")
                    report = gr.DownloadButton(t("report"), value=None, elem_id="report")
            # the three classifiers side by side, then what the scan resembles
            with gr.Row(equal_height=True):
                tuned_label = gr.Label(num_top_classes=10, label=t("tuned_probs"),
                                       elem_id="tuned-probs")
                zero_label = gr.Label(num_top_classes=10, label=t("zero_shot_probs"),
                                      elem_id="zero-probs")
                baseline_label = gr.Label(num_top_classes=10, label=t("baseline_probs"),
                                          elem_id="baseline-probs")
            nearest = gr.Gallery(label=t("nearest"), columns=6, height=230,
                                 fit_columns=False, object_fit="contain", allow_preview=False,
                                 elem_id="nearest")

        with gr.Tab(t("tab_evaluate")):
            gr.Markdown(t("eval_intro"))
            with gr.Row():
                test_zip = gr.File(type="filepath", file_types=[".zip"], label=t("eval_zip"),
                                   elem_id="test-zip")
                with gr.Column():
                    test_files = gr.File(file_count="multiple", type="filepath",
                                         label=t("eval_files"), elem_id="test-files")
                    test_class = gr.Dropdown([], label=t("eval_class"), elem_id="test-class")
            test_window, test_level, test_width, test_index = _window_controls("test")
            add_test = gr.Button(t("add_test"))
            test_status = gr.Markdown(elem_id="test-status")
            test_counts = gr.Markdown(elem_id="test-counts")
            run_eval = gr.Button(t("evaluate"), variant="primary")
            eval_status = gr.Markdown(elem_id="eval-status")
            # hidden until there are figures: an empty table shows made-up headers "1 2 3"
            metrics = gr.Dataframe(label=t("metrics"), interactive=False, visible=False,
                                   value=None, elem_id="metrics")
            with gr.Row():
                confusion_zero = gr.Plot(show_label=False, elem_id="confusion-zero", format="png")
                confusion_tuned = gr.Plot(show_label=False, elem_id="confusion-tuned",
                                          format="png")
            # from the matrix back to the scans: one cell's test scans with their maps
            cell = gr.Dropdown([], label=t("cell"), visible=False, elem_id="confusion-cell")
            cell_status = gr.Markdown(elem_id="cell-status")
            cell_gallery = gr.Gallery(label=t("cell_scans"), columns=6, height="auto",
                                      fit_columns=False, object_fit="contain",
                                      allow_preview=False, elem_id="cell-gallery")
            promote = gr.Button(t("promote"), visible=False, elem_id="promote")

        with gr.Tab(t("tab_prompts")):
            save = gr.DownloadButton(t("save_prompts"), value=None, elem_id="save-prompts")
            load = gr.File(type="filepath", file_types=[".safetensors"], label=t("load_prompts"),
                           elem_id="load-prompts")
            prompts_status = gr.Markdown(elem_id="prompts-status")

        # ---- wiring ---------------------------------------------------------------------
        windows = [window, predict_window, test_window]
        demo.load(studio.on_load, None,
                  [status, poll, model_actions, preset, modality, *windows, curve, samples,
                   legend], queue=False, api_name="status")
        demo.unload(studio.close_session)
        model_view = [status, poll, model_actions]
        poll.tick(studio.status_until_ready, None, model_view, queue=False, api_visibility="private")
        retry.click(studio.retry_load, None, model_view, queue=False, api_visibility="private")
        use_demo.click(studio.use_demo_model, None, model_view, queue=False, api_visibility="private")
        for upload in (files, scan, test_zip, test_files, load):
            upload.upload(studio.remember_upload, upload, None, queue=False, api_visibility="private")

        modality.input(studio.modality_changed, modality, [organ, template], queue=False,
                       api_visibility="private")
        organ.input(studio.organ_changed, [modality, organ], template, queue=False,
                    api_visibility="private")
        preset.input(studio.preset_chosen, preset,
                     [modality, organ, template, table, lambda_l1, lambda_kl, task_status],
                     queue=False, api_visibility="private")
        apply.click(studio.set_task, [session, modality, organ, template, table, lambda_l1, lambda_kl],
                    [session, task_status, example_class, test_class, gallery, counts, *windows],
                    api_name="set_task").then(_bump, cards_rev, cards_rev, queue=False,
                                              api_visibility="private")

        use_samples.click(studio.use_samples, [session, samples],
                          [session, task_status, example_class, test_class, gallery, counts,
                           *windows, modality, organ, template, table, lambda_l1, lambda_kl,
                           example_status], api_name="use_samples", concurrency_id="infer",
                          concurrency_limit=INFER_CONCURRENCY).then(
            _bump, cards_rev, cards_rev, queue=False, api_visibility="private").then(
            studio.prepare_features, session, [session, features_status],
            concurrency_id="encode", concurrency_limit=ENCODE_CONCURRENCY, api_visibility="private")

        view_inputs = [files, window, level, width, index]
        view_outputs = [preview, preview_text, frame]
        for trigger in (files.change, window.input, index.submit, level.submit, width.submit):
            trigger(studio.preview, view_inputs, view_outputs, concurrency_id="infer",
                    concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        # the slider picks the frame or slice that will be added, and shows it
        frame.release(lambda k: int(k), frame, index, queue=False, api_visibility="private").then(
            studio.preview, view_inputs, view_outputs, concurrency_id="infer",
            concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        add.click(studio.add_examples, [session, files, example_class, window, level, width, index],
                  [session, files, example_status, gallery, counts], api_name="add_examples",
                  concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY).then(
            _bump, cards_rev, cards_rev, queue=False, api_visibility="private").then(
            studio.prepare_features, session, [session, features_status],
            concurrency_id="encode", concurrency_limit=ENCODE_CONCURRENCY, api_visibility="private")
        remove.click(studio.remove_selected, session, [session, example_status, gallery, counts],
                     api_name="remove_selected").then(_bump, cards_rev, cards_rev, queue=False,
                                                       api_visibility="private")

        tune.click(studio.tune, [session, recipe, lambda_l1, lambda_kl, steps, epochs, seed],
                   [session, tune_status, curve, map_class, save], api_name="tune",
                   concurrency_id="tune", concurrency_limit=TUNING_SESSIONS,
                   show_progress_on=[tune_status])
        stop.click(studio.stop, session, tune_status, queue=False, api_name="stop")

        # the prediction first; its report is made after it is on screen, in its own line
        map_inputs = [session, map_class, alpha, cmap]
        predict.click(studio.report_pending, None, report, queue=False,
                      api_visibility="private").then(
            studio.predict,
            [session, scan, predict_window, predict_level, predict_width, predict_index, alpha,
             cmap],
            [session, tuned_label, zero_label, scan_view, heat, map_class, predict_status,
             baseline_label, nearest],
            api_name="predict", concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY).then(
            studio.report, map_inputs, report, api_name="report", concurrency_id="report",
            concurrency_limit=REPORT_CONCURRENCY).then(
            studio.report_ready, None, report, queue=False, api_visibility="private")
        for trigger, name in ((map_class.input, "change_map"), (alpha.release, None),
                              (cmap.input, None)):
            trigger(studio.report_pending, None, report, queue=False,
                    api_visibility="private").then(
                studio.change_map, map_inputs, [session, heat], api_name=name,
                api_visibility="public" if name else "private", concurrency_id="infer",
                concurrency_limit=INFER_CONCURRENCY).then(
                studio.report, map_inputs, report, concurrency_id="report",
                concurrency_limit=REPORT_CONCURRENCY, api_visibility="private").then(
                studio.report_ready, None, report, queue=False, api_visibility="private")
        cmap.input(studio.legend, cmap, legend, queue=False, api_visibility="private")

        add_test.click(studio.add_test_scans,
                       [session, test_zip, test_files, test_class, test_window, test_level,
                        test_width, test_index],
                       [session, test_zip, test_files, test_status, test_counts],
                       api_name="add_test_scans", concurrency_id="infer",
                       concurrency_limit=INFER_CONCURRENCY)
        run_eval.click(studio.evaluate, session,
                       [session, eval_status, metrics, confusion_zero, confusion_tuned, cell],
                       api_name="evaluate", concurrency_id="infer",
                       concurrency_limit=INFER_CONCURRENCY).then(
            studio.show_cell, [session, cell], [session, cell_gallery, cell_status, promote],
            concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        cell.input(studio.show_cell, [session, cell],
                   [session, cell_gallery, cell_status, promote], api_name="show_cell",
                   concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY)
        cell_gallery.select(studio.select_cell_scan, session, [session, cell_status],
                            queue=False, api_visibility="private")
        promote.click(studio.promote_cell_scan, session,
                      [session, cell_status, gallery, counts, test_counts, cell_gallery],
                      api_name="promote_cell_scan").then(_bump, cards_rev, cards_rev, queue=False,
                                                         api_visibility="private")
        load.upload(studio.load_prompts, [session, load],
                    [session, prompts_status, modality, organ, template, table, example_class,
                     test_class, save, *windows],
                    api_name="load_prompts").then(_bump, cards_rev, cards_rev, queue=False,
                                                  api_visibility="private")
        offered = tools.register(studio, {"infer": ("infer", INFER_CONCURRENCY),
                                          "tune": ("tune", TUNING_SESSIONS)})
    if mcp:  # the tools only: every other endpoint stays callable, undocumented
        for fn in demo.fns.values():
            if fn.api_visibility == "public" and fn.api_name not in offered.names:
                fn.api_visibility = "undocumented"
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=4)
    return demo


def launch_options(mcp: bool = False) -> dict:
    """Options that belong to `launch()` in Gradio 6: privacy, look, and the MCP server (at
    /gradio_api/mcp/) when asked for."""
    return dict(run_history=False, max_file_size=MAX_UPLOAD, i18n=I18N, css=CSS,
                theme=gr.themes.Soft(), show_error=False, mcp_server=mcp)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Biomed-DPT Studio: the clinician app.")
    parser.add_argument("--backbone", default="biomedclip",
                        help="biomedclip (default), hf-hub:ORG/NAME, local-dir:PATH, or "
                             "tiny-biomedclip to try the interface offline")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="make a temporary public link")
    parser.add_argument("--mcp", action="store_true",
                        help="also serve the stateless tools to agents as an MCP server "
                             "(streamable HTTP at /gradio_api/mcp/)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="longest a tuning run may take, in seconds (default 300; 90 on "
                             "ZeroGPU, where a run is one GPU call)")
    return parser.parse_args(argv)


def create_app(argv: list[str] | None = None) -> tuple[gr.Blocks, argparse.Namespace]:
    """The app. On ZeroGPU the model is loaded here, at import, before the GPU workers fork
    from this process; elsewhere in a background thread while the page is served."""
    args = parse_args(argv)
    storage.start()
    zerogpu = gpu.mode() == "zerogpu"
    budget = args.time_budget if args.time_budget is not None else (
        ZEROGPU_TIME_BUDGET_S if zerogpu else TIME_BUDGET_S)
    studio = Studio.start(args.backbone, args.device, background=not zerogpu,
                          time_budget_s=budget)
    return build_demo(studio, args.mcp), args
